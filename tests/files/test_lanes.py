"""Upload lanes: an upload's chunks run in order; stopping drops what has not started and waits for what has;
a failure comes out of the next put or drain; uploads sharing a lane take turns."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pynode.files.lanes import TRIP_CHUNKS, Lanes


async def test_an_uploads_chunks_run_in_order_and_uploads_take_lanes_in_turn() -> None:
    lanes = Lanes(2)
    try:
        seen: list[tuple[str, bytes]] = []
        first = lanes.lane(lambda c: seen.append(("a", bytes(c))), 10)
        second = lanes.lane(lambda c: seen.append(("b", bytes(c))), 10)
        for i in range(50):
            await first.put(bytes([i]))
            await second.put(bytes([i]))
        await asyncio.gather(first.drain(), second.drain())
        assert [c for who, c in seen if who == "a"] == [bytes([i]) for i in range(50)]
        assert [c for who, c in seen if who == "b"] == [bytes([i]) for i in range(50)]
    finally:
        lanes.close()


async def test_uploads_sharing_a_lane_take_turns() -> None:
    lanes = Lanes(1)
    try:
        release = threading.Event()
        seen: list[str] = []

        def work(who: str) -> object:
            def run(chunk: bytes | memoryview) -> None:
                release.wait(5)
                seen.append(who)

            return run

        first = lanes.lane(work("a"), 1000)  # type: ignore[arg-type]
        second = lanes.lane(work("b"), 1000)  # type: ignore[arg-type]
        for _ in range(3 * TRIP_CHUNKS):
            await first.put(b"x")
        await second.put(b"y")
        release.set()
        await asyncio.gather(first.drain(), second.drain())
        assert seen.index("b") <= TRIP_CHUNKS + 1  # b's turn comes after one of a's trips, not after all of a
    finally:
        lanes.close()


async def test_stop_drops_the_waiting_chunks_and_waits_for_the_running_one() -> None:
    lanes = Lanes(1)
    try:
        started, release = threading.Event(), threading.Event()
        ran: list[bytes] = []

        def slow(chunk: bytes | memoryview) -> None:
            if chunk == b"running":
                started.set()
                release.wait(5)
            ran.append(bytes(chunk))

        lane = lanes.lane(slow, 100)
        await lane.put(b"running")
        for i in range(3):
            await lane.put(bytes([i]))
        await asyncio.to_thread(started.wait, 5)
        stopping = asyncio.ensure_future(lane.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # the running chunk still uses the file
        release.set()
        await asyncio.wait_for(stopping, 5)
        assert ran == [b"running"]  # the waiting ones never ran
        other = lanes.lane(ran.append, 100)  # type: ignore[arg-type]  # the lane goes on serving other uploads
        await other.put(b"next")
        await other.drain()
        assert ran[-1] == b"next"
    finally:
        lanes.close()


async def test_a_failure_comes_out_of_the_next_put_or_drain_and_later_chunks_do_not_run() -> None:
    lanes = Lanes(1)
    try:
        ran: list[bytes] = []

        def work(chunk: bytes | memoryview) -> None:
            if chunk == b"bad":
                raise OSError(28, "No space left on device")
            ran.append(bytes(chunk))

        lane = lanes.lane(work, 100)
        await lane.put(b"ok")
        await lane.put(b"bad")
        with pytest.raises(OSError):
            await lane.drain()
        with pytest.raises(OSError):
            await lane.put(b"after")
        assert ran == [b"ok"]
    finally:
        lanes.close()


async def test_a_lane_whose_pool_stopped_fails_its_upload_rather_than_hanging() -> None:
    lanes = Lanes(1)
    lanes.close()
    lane = lanes.lane(lambda c: None, 100)
    with pytest.raises(RuntimeError):
        await lane.put(b"x")
        await lane.drain()
