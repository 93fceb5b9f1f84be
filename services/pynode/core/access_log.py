"""The access log: one JSON line per RPC, buffered and written in batches.

Going through `logging` for every call cost a fifth of a cheap RPC's throughput
(record creation, handler locks, a flush per line); here a call only appends a
tuple, and a background task formats and writes the batch a few times a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import TextIO

from pynode.core.tasks import TaskSet

LOGGER_NAME = "pynode.access"

Entry = tuple[float, str, str, str, float, str, str, str, str]


class AccessLog:
    """Buffered access log lines in the same JSON shape as every other log line."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.25, max_buffer: int = 50_000) -> None:
        self.enabled = logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO)
        self._stream = stream
        self._interval = interval
        self._max_buffer = max_buffer
        self._buffer: list[Entry] = []
        self._writer: TaskSet | None = None
        self.dropped = 0

    def record(
        self,
        request_id: str,
        method: str,
        code: str,
        duration_ms: float,
        peer: str,
        reason: str,
        user: str = "",
        trace_id: str = "",
    ) -> None:
        """Queue one line (never blocks; drops and counts when the writer falls far behind). `user` is the
        authenticated caller's id (a user id or `service:<name>`), empty for anonymous calls; `trace_id` the
        call's trace when tracing is on."""
        if not self.enabled:
            return
        if len(self._buffer) >= self._max_buffer:
            self.dropped += 1
            return
        self._buffer.append((time.time(), request_id, method, code, duration_ms, peer, reason, user, trace_id))

    def flush(self) -> None:
        """Write every queued line now."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        lines = []
        second, whole = -1, ""
        peers: dict[str, str] = {}  # a batch comes from few addresses: each escaped once
        for created, request_id, method, code, duration_ms, peer, reason, user, trace_id in batch:
            if int(created) != second:  # a batch spans a few seconds: each formatted once
                second = int(created)
                whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            stamp = f"{whole}.{int(created % 1 * 1000):03d}Z"
            quoted = peers.get(peer)
            if quoted is None:
                quoted = peers[peer] = json.dumps(peer)
            # Formatted by hand (json.dumps of the whole dict costs more than the RPC's own logging
            # budget); request ids, methods and codes come from fixed alphabets, the rest is escaped.
            line = (
                f'{{"ts": "{stamp}", "level": "info", "logger": "{LOGGER_NAME}", "msg": "rpc", '
                f'"request_id": "{request_id}", "method": "{method}", "code": "{code}", '
                f'"duration_ms": {duration_ms}, "peer": {quoted}'
            )
            if user:  # user ids and service names come from verified tokens, but escape them all the same
                line += f', "user": {json.dumps(user)}'
            if trace_id:  # 32 hex digits made here
                line += f', "trace_id": "{trace_id}"'
            lines.append(line + (f', "reason": {json.dumps(reason)}}}' if reason else "}"))
        stream = self._stream or sys.stderr
        stream.write("\n".join(lines) + "\n")
        stream.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    def start(self) -> None:
        """Begin writing batches in the background."""
        if self.enabled and self._writer is None:
            self._writer = TaskSet("access-log")
            self._writer.once("writer", self._run)

    async def stop(self) -> None:
        """Stop the writer and write what is left."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close(grace=0)  # the loop only sleeps between batches; the last one is written here
        self.flush()
