"""Background tasks of a service: stopping one the same way everywhere."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop(task: asyncio.Future[Any] | None) -> None:
    """Cancel `task` and wait until it has finished. Waiting with `asyncio.wait` never raises the task's own
    cancellation here, so a caller that is itself being cancelled still is."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    await asyncio.wait([task])
