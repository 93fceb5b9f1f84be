"""Outbound deadlines: every call this process makes (gRPC peers, provider HTTP) ends before its caller's.

gRPC Python does not carry a deadline from an incoming call to the calls it makes, so the edge records
each RPC's deadline here and `outbound_timeout` derives the timeout of every outbound call from it.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from pynode.core.errors import DeadlineExceeded

# Time kept back for answering the caller after the outbound call returns or times out.
REPLY_MARGIN_SECONDS = 0.02

_deadline: ContextVar[float | None] = ContextVar("devpynode_deadline", default=None)


def bind(remaining_seconds: float | None) -> None:
    """Record the running RPC's deadline (None: the caller set none). Called by the edge for each call."""
    _deadline.set(None if remaining_seconds is None else time.monotonic() + remaining_seconds)


def remaining() -> float | None:
    """Seconds left before the running RPC's deadline, or None without one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def outbound_timeout(budget_seconds: float) -> float:
    """The timeout of one outbound call: its own budget, cut to the caller's remaining time (less a margin
    to answer in). Raises DeadlineExceeded when the caller's time is already spent, rather than starting
    a call that cannot finish."""
    left = remaining()
    if left is None:
        return budget_seconds
    left -= REPLY_MARGIN_SECONDS
    if left <= 0:
        raise DeadlineExceeded("the caller's deadline passed before the call to a dependency could start")
    return min(budget_seconds, left)
