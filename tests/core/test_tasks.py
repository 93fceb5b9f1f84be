"""The task set every service's background work runs in: ownership, failures logged once, periodic
sweeps, named single tasks and a bounded close."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pynode.core.tasks import TaskSet


async def test_spawned_task_is_owned_until_it_ends() -> None:
    tasks = TaskSet("t")
    gate = asyncio.Event()
    task = tasks.spawn(gate.wait())
    assert len(tasks) == 1
    gate.set()
    await task
    await asyncio.sleep(0)
    assert len(tasks) == 0
    await tasks.close()


async def test_a_failure_is_logged_once_with_the_set_name(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("ledger")

    async def broken() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="pynode.tasks"):
        task = tasks.spawn(broken(), name="flush")
        await asyncio.wait([task])
        await asyncio.sleep(0)
    failures = [r for r in caplog.records if "ledger" in r.getMessage() and "flush" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and isinstance(failures[0].exc_info[1], ValueError)
    await tasks.close()


async def test_once_starts_a_named_task_only_while_none_runs() -> None:
    tasks = TaskSet("feed")
    started = 0
    gate = asyncio.Event()

    async def reader() -> None:
        nonlocal started
        started += 1
        await gate.wait()

    first = tasks.once("reader", reader)
    assert tasks.once("reader", reader) is first
    await asyncio.sleep(0)
    gate.set()
    await first
    second = tasks.once("reader", reader)
    assert second is not first
    await second
    assert started == 2
    await tasks.close()


async def test_periodic_work_runs_until_close_and_finishes_its_run() -> None:
    tasks = TaskSet("sweeps")
    runs: list[str] = []
    in_run = asyncio.Event()
    release = asyncio.Event()

    async def sweep() -> int:
        runs.append("start")
        in_run.set()
        await release.wait()
        runs.append("end")
        return 1

    tasks.every("sweep", 0.01, sweep, "swept")
    await in_run.wait()
    closing = asyncio.ensure_future(tasks.close(grace=5))
    await asyncio.sleep(0.05)
    assert not closing.done()  # a run in progress is not cut
    release.set()
    await closing
    assert runs == ["start", "end"]


async def test_close_cancels_what_outlives_the_grace() -> None:
    tasks = TaskSet("jobs")
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = tasks.spawn(stuck())
    await asyncio.sleep(0)
    await tasks.close(grace=0.01)
    assert task.cancelled() and cancelled.is_set()
    with pytest.raises(RuntimeError):
        tasks.spawn(asyncio.sleep(0))


async def test_a_failing_periodic_run_is_retried() -> None:
    tasks = TaskSet("sweeps")
    calls = 0
    twice = asyncio.Event()

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            twice.set()
        raise ConnectionError("database away")

    tasks.every("flaky", 0.001, flaky, "done")
    await asyncio.wait_for(twice.wait(), 10)
    await tasks.close()
    assert calls >= 2


async def test_wait_lets_running_tasks_end_and_keeps_the_set_open() -> None:
    tasks = TaskSet("bookkeeping")
    gate = asyncio.Event()
    task = tasks.spawn(gate.wait())
    tasks.spawn(asyncio.sleep(0))
    await tasks.wait(0)  # a zero wait returns with the gated task still running
    assert not task.done()
    gate.set()
    await tasks.wait()
    assert task.done() and len(tasks) == 0
    tasks.spawn(asyncio.sleep(0))  # still open
    await tasks.close()
