"""The embedded event streams keep what they are given at its own size."""

from __future__ import annotations

import tracemalloc
import uuid

import orjson

from pynode.core.adapters.memory_streams import MemoryEventStreams


def _delta() -> bytes:
    # What chat's events.encode makes of a token delta: orjson's output.
    return orjson.dumps({"k": "delta", "d": {"message_id": str(uuid.uuid4()), "seq": 1, "text": "soak " * 8}})


async def test_kept_events_cost_their_size_not_the_encoders_buffer() -> None:
    # Found by the soak: orjson's output keeps a buffer of 4 KiB or more whatever the event's length, and a
    # conversation's stream keeps 10,000 events; the embedded server's RSS grew by 60 MiB for one conversation.
    size = len(_delta())
    assert size < 200
    streams = MemoryEventStreams(max_len=2_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2_000):
            await streams.append("conversation", _delta())
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    backlog = await streams.read_after("conversation", "0-0")
    assert len(backlog.events) == 2_000 and orjson.loads(backlog.events[-1].payload)["k"] == "delta"
    assert kept / 2_000 < 1024, f"{kept / 2_000:.0f} bytes kept per {size}-byte event"
