"""Upload lanes: an upload's chunks run in order; stopping drops what has not started and waits for what has."""

from __future__ import annotations

import asyncio
import threading

from pynode.files.lanes import Lanes


async def test_an_uploads_chunks_run_in_order_and_uploads_take_lanes_in_turn() -> None:
    lanes = Lanes(2)
    try:
        seen: list[tuple[str, bytes]] = []
        first, second = lanes.lane(), lanes.lane()
        work = [first.run(lambda c: seen.append(("a", c)), bytes([i])) for i in range(50)]
        work += [second.run(lambda c: seen.append(("b", c)), bytes([i])) for i in range(50)]
        await asyncio.gather(*work)
        assert [c for who, c in seen if who == "a"] == [bytes([i]) for i in range(50)]
        assert [c for who, c in seen if who == "b"] == [bytes([i]) for i in range(50)]
    finally:
        lanes.close()


async def test_stop_drops_the_waiting_chunks_and_waits_for_the_running_one() -> None:
    lanes = Lanes(1)
    try:
        lane = lanes.lane()
        started, release = threading.Event(), threading.Event()
        ran: list[bytes] = []

        def slow(chunk: bytes) -> None:
            started.set()
            release.wait(5)
            ran.append(chunk)

        lane.run(slow, b"running")
        for i in range(3):
            lane.run(ran.append, bytes([i]))
        await asyncio.to_thread(started.wait, 5)
        stopping = asyncio.ensure_future(lane.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # the running chunk still uses the file
        release.set()
        await asyncio.wait_for(stopping, 5)
        assert ran == [b"running"]  # the waiting ones never ran
        other = lanes.lane()  # the lane itself goes on serving other uploads
        await other.run(ran.append, b"next")
        assert ran[-1] == b"next"
    finally:
        lanes.close()
