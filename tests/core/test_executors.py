"""Named blocking pools: work runs on the pool's own threads, pools are shared by name and closed together."""

from __future__ import annotations

import threading

from pynode.core.executors import Executors


async def test_work_runs_on_the_named_pools_threads() -> None:
    executors = Executors()
    pool = executors.pool("bcrypt", 2)
    assert executors.pool("bcrypt", 8) is pool and pool.threads == 2
    name = await pool.run(lambda: threading.current_thread().name)
    assert name.startswith("bcrypt")
    assert await pool.run(pow, 2, 10) == 1024
    assert await pool.run(int, "ff", base=16) == 255
    await executors.close()
    assert executors.names() == []


async def test_close_waits_for_running_work() -> None:
    executors = Executors()
    pool = executors.pool("slow", 1)
    started, finished = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        finished.wait(0.2)
        finished.set()

    future = pool.executor.submit(work)
    started.wait(5)
    await executors.close()
    assert future.done() and finished.is_set()
