"""The relay between a provider's stream and the caller's: a reader task and coalescing under back-pressure.

The provider is read in a task of its own, so text that arrives while the caller's stream is still busy
sending is sent as one message. When the caller keeps up, every delta goes out as it comes (the first one
at once); when it does not, deltas merge instead of queueing messages. Stopping the relay cancels the
reader, which closes the upstream HTTP request there and then; `expire` ends the caller's side early (the
slot-hold ceiling). Tool-call pieces travel beside the text: `take_calls` hands over those read with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pynode.ai.domain import Chunk, Delta, Finished, ToolCallDelta
from pynode.ai.tools import coalesce
from pynode.core import tasks


class Relay:
    """Reads `stream` (the chunks after the first) until it ends, fails or is stopped."""

    def __init__(self, stream: AsyncIterator[Chunk]) -> None:
        self._stream = stream
        self._pending: list[str] = []
        self._calls: list[ToolCallDelta] = []
        self._ready = asyncio.Event()
        self.deltas = 0
        self.finished: Finished | None = None
        self.error: BaseException | None = None
        self.done = False
        self.expired = False
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for chunk in self._stream:
                if isinstance(chunk, Delta):
                    self._pending.append(chunk.text)
                    self.deltas += chunk.tokens
                    if chunk.tool_calls:
                        self._calls.extend(chunk.tool_calls)
                else:
                    self.finished = chunk
                self._ready.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the caller's side, which decides what the caller sees
            self.error = exc
        finally:
            self.done = True
            self._ready.set()
            with contextlib.suppress(Exception):
                await self._stream.aclose()  # type: ignore[attr-defined]

    async def next(self) -> str | None:
        """All text read since the last call, waiting for some ("" when only tool-call pieces came: take them
        with `take_calls`); None once the stream has ended."""
        while not self._pending:
            if self.done or self.expired:
                return None
            self._ready.clear()
            await self._ready.wait()
        text = "".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        return text

    def take_calls(self) -> tuple[ToolCallDelta, ...]:
        """The tool-call pieces read with the text `next` returned, consecutive pieces of a call merged."""
        if not self._calls:
            return ()
        calls, self._calls = coalesce(self._calls), []
        return tuple(calls)

    def expire(self) -> None:
        """End the stream here (the generation's time is up): `next` returns what was read, then None."""
        self.expired = True
        self._ready.set()

    async def stop(self) -> None:
        """Stop reading and close the upstream request (idempotent)."""
        await tasks.stop(self._task)
