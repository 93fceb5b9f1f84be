"""Python asyncio clients of client-streaming RPCs: keep the status the server sent when a late write fails.

grpcio's asyncio client (1.85 and earlier, grpc/grpc#36066, fix proposed in grpc/grpc#43486) loses the server's
answer in a race. When a server ends a client-streaming call before the client has finished sending (UploadFile
refusing a bad token, a file over the limit, a full quota), it sends its trailers and resets the stream; a client
write still in flight then fails, and `_StreamRequestMixin._write` marks the call INTERNAL ("Internal error from
Core") unconditionally, overwriting the status Core had already delivered whenever the event loop handles the
failed write after it. The server answered right (its access log shows UNAUTHENTICATED); the caller saw INTERNAL,
a few calls in a hundred when chunks exceed the flow-control window.

`keep_delivered_status()` installs the same method with one change: INTERNAL is set only while no status has been
delivered (the case the unconditional call was added for, a batch Core rejects synchronously, keeps its fix).
It patches only the exact code it knows (checked by its source), so a grpcio that fixes the bug, or changes the
method, is left alone. Our Python clients (the test suite's, the benchmarks') install it; other clients in Python
want the same (or grpcio's sync API, which is not affected).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from grpc import _common  # private, like _call: the code being patched uses both
from grpc._cython import cygrpc
from grpc.aio import _call

_FLAWED = "self._cython_call.set_internal_error(str(err))"  # unguarded, in the except clause below
_PATCHED = "_devpynode_keeps_delivered_status"


def flawed() -> bool:
    """Whether the installed grpcio overwrites a delivered status on a late write failure (the code we know)."""
    write = _call._StreamRequestMixin._write
    if getattr(write, _PATCHED, False):
        return False
    try:
        source = inspect.getsource(write)
    except (OSError, TypeError):
        return False
    _, found, rest = source.partition("except cygrpc.InternalError as err:")
    between, flawed_call, _ = rest.partition(_FLAWED)
    return bool(found and flawed_call) and "done()" not in between  # no guard between the except and the call


async def _write(self: Any, request: Any) -> None:
    # grpcio 1.85's _StreamRequestMixin._write, but for the guard on set_internal_error.
    if self.done():
        raise asyncio.InvalidStateError(_call._RPC_ALREADY_FINISHED_DETAILS)
    if self._done_writing_flag:
        raise asyncio.InvalidStateError(_call._RPC_HALF_CLOSED_DETAILS)
    if not self._metadata_sent.is_set():
        await self._metadata_sent.wait()
        if self.done():
            await self._raise_for_status()
    serialized_request = _common.serialize(request, self._request_serializer)
    try:
        await self._cython_call.send_serialized_message(serialized_request)
    except cygrpc.InternalError as err:
        if not self._cython_call.done():  # else the status Core delivered (the server's) is the call's outcome
            self._cython_call.set_internal_error(str(err))
        await self._raise_for_status()
    except asyncio.CancelledError:
        if not self.cancelled():
            self.cancel()
        raise


setattr(_write, _PATCHED, True)


def keep_delivered_status() -> bool:
    """Install the fixed write on grpcio's asyncio client calls; True when it was installed now (idempotent)."""
    if not flawed():
        return False
    _call._StreamRequestMixin._write = _write  # type: ignore[method-assign]
    return True
