"""The files service's thread pools: the process's (named, closed by the app after every module), or pools of
a component's own when it runs outside a process's wiring (a command-line tool, a test), which it stops itself.
"""

from __future__ import annotations

from pynode.core.executors import BlockingPool, Executors


def pool(executors: Executors | None, name: str, threads: int) -> BlockingPool:
    """The process's pool `name` when there are `executors`, else a new one."""
    return executors.pool(name, threads) if executors is not None else BlockingPool(name, threads)


def stop_own(*pools: BlockingPool) -> None:
    """Stop pools a component made for itself: what waits is dropped, what runs ends on its own."""
    for each in pools:
        each.executor.shutdown(wait=False, cancel_futures=True)
