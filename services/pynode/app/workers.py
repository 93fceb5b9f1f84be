"""`devpynode serve --workers N`: N processes serving one port, and a parent that supervises them.

The parent creates no gRPC object: it starts each worker as a fresh `devpynode serve` process (nothing is
inherited from a fork), all binding the same port with SO_REUSEPORT, so the kernel spreads connections over
them. It restarts a worker that dies, passes SIGTERM and Ctrl-C on (each worker drains its calls), and gives
up with a non-zero status when workers keep dying (more than RESTART_LIMIT in a row, each within RESTART_WINDOW
seconds of its start: counted by lifetime, not by clock, so a start that is slow on a busy machine still
counts). Workers share nothing in memory, so sessions, limits and events must live in Redis: `memory://` is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
POLL_SECONDS = 0.2


@dataclass
class Worker:
    """One serving process."""

    index: int
    process: subprocess.Popen[bytes]
    started: float


class Supervisor:
    """Starts, watches and stops the workers."""

    def __init__(self, count: int, command: list[str], env: dict[str, str], metrics_port: int, grace: float) -> None:
        self.count = count
        self.command = command
        self.env = env
        self.metrics_port = metrics_port
        self.grace = grace
        self.workers: list[Worker] = []
        self.quick_deaths = 0  # in a row: workers that died within RESTART_WINDOW of their start
        self.stopping = False

    def _spawn(self, index: int) -> Worker:
        env = dict(self.env)
        env["DEVPYNODE_REUSE_PORT"] = "true"
        if self.metrics_port > 0:  # one /metrics per worker: base, base + 1, ...
            env["DEVPYNODE_METRICS_PORT"] = str(self.metrics_port + index)
        process = subprocess.Popen(self.command, env=env, stdout=subprocess.DEVNULL)  # noqa: S603 - our own command
        return Worker(index, process, time.monotonic())

    def start(self) -> None:
        self.workers = [self._spawn(i) for i in range(self.count)]

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping:  # the second signal: no more waiting
            for worker in self.workers:
                worker.process.kill()
            os._exit(130)
        self.stopping = True

    def run(self) -> int:
        """Supervise until a signal (0) or until workers keep dying (1)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        while not self.stopping:
            time.sleep(POLL_SECONDS)
            for slot, worker in enumerate(self.workers):
                code = worker.process.poll()
                if code is None or self.stopping:
                    continue
                lived = time.monotonic() - worker.started
                # A worker that served a while and then died is restarted afresh; one that dies soon after its
                # start (a database that is not there) is a start failing, however slow the start was.
                self.quick_deaths = self.quick_deaths + 1 if lived < RESTART_WINDOW else 0
                if self.quick_deaths > RESTART_LIMIT:
                    print(
                        f"devpynode: workers keep dying ({self.quick_deaths} in a row within {RESTART_WINDOW:g} s "
                        f"of their start; the last exited with {code}); stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.stop()
                    return 1
                print(
                    f"devpynode: worker {worker.index} (pid {worker.process.pid}) exited with {code}; restarting",
                    file=sys.stderr,
                    flush=True,
                )
                self.workers[slot] = self._spawn(worker.index)
        self.stop()
        return 0

    def stop(self) -> None:
        """SIGTERM to every worker (each drains its calls), then wait; kill what is left."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + 10
        for worker in self.workers:
            left = max(0.1, deadline - time.monotonic())
            try:
                worker.process.wait(left)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
