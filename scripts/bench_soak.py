"""The soak scenario: mixed traffic at a stated share of measured capacity for a stated time.

First the capacity of the mix is measured (closed loop, the bench's concurrency, a few seconds); then calls are
started at `share` x that rate (open loop: a late call does not delay the next one) for `minutes`. The mix:
GetCurrentUser 40%, ListConversations 25%, SendMessage to builtin/echo read to its end 15%, a 4 KiB upload 10%,
then its download and delete 10%. Each minute gives its p99, and the server's RSS and open file descriptors.

Targets: zero errors; the last minute's p99 within 1.5x of the first's; RSS and fds flat (the last minute's
within 1.25x of the first's, plus 16 MiB / 16 fds of slack for small absolute numbers).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from bench_report import Outcome, verdict
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc

MIX = (("me", 40), ("list", 25), ("send", 15), ("upload", 10), ("download", 10))
CAPACITY_SECONDS = 5.0
MAX_IN_FLIGHT = 512


@dataclass
class Minute:
    """One window's figures."""

    calls: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    rss_mib: float = 0.0
    fds: int = 0

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115 - a tiny /proc read
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Mix:
    """The mixed calls as the bench user; uploads are downloaded and deleted later, so storage stays flat."""

    def __init__(self, channel: grpc.aio.Channel, bearer: list[tuple[str, str]]) -> None:
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.chat = chat_pb2_grpc.ChatServiceStub(channel)
        self.files = files_pb2_grpc.FileServiceStub(channel)
        self.bearer = bearer
        self.conversation = ""
        self.uploaded: list[str] = []
        self.errors: dict[str, int] = {}
        weights = [w for _, w in MIX]
        self.pick: Callable[[], str] = lambda: random.choices([n for n, _ in MIX], weights)[0]

    async def prepare(self) -> None:
        created = await self.chat.CreateConversation(
            chat_pb2.CreateConversationRequest(title="soak", model="builtin/echo"), metadata=self.bearer
        )
        self.conversation = created.conversation.id

    async def call(self, kind: str) -> None:
        if kind == "me":
            await self.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=self.bearer)
        elif kind == "list":
            await self.chat.ListConversations(chat_pb2.ListConversationsRequest(page_size=10), metadata=self.bearer)
        elif kind == "send":
            request = chat_pb2.SendMessageRequest(conversation_id=self.conversation, text="soak " * 8)
            async for _ in self.chat.SendMessage(request, metadata=self.bearer):
                pass
        elif kind == "upload" or not self.uploaded:
            name = f"soak-{uuid.uuid4().hex[:8]}.txt"
            parts = [
                files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename=name, content_type="text/plain")),
                files_pb2.UploadFileRequest(chunk=b"soak line\n" * 410),
            ]
            done = await self.files.UploadFile(iter(parts), metadata=self.bearer)
            self.uploaded.append(done.file.id)
        else:
            file_id = self.uploaded.pop(0)
            download = files_pb2.DownloadFileRequest(file_id=file_id)
            async for _ in self.files.DownloadFile(download, metadata=self.bearer):
                pass
            await self.files.DeleteFile(files_pb2.DeleteFileRequest(file_id=file_id), metadata=self.bearer)


async def _timed(mix: Mix, kind: str, minute: Minute) -> None:
    started = time.perf_counter()
    try:
        await mix.call(kind)
    except grpc.aio.AioRpcError as error:
        minute.errors += 1
        key = f"{kind}:{error.code().name}"
        mix.errors[key] = mix.errors.get(key, 0) + 1
        return
    minute.calls += 1
    minute.latencies.append(time.perf_counter() - started)


async def capacity(mix: Mix, concurrency: int) -> float:
    """Calls per second of the mix, closed loop."""
    done = 0
    deadline = time.perf_counter() + CAPACITY_SECONDS
    scratch = Minute()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await _timed(mix, mix.pick(), scratch)
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - began)


async def soak_scenario(
    channel: grpc.aio.Channel, pid: int, bearer: list[tuple[str, str]], concurrency: int, minutes: float, share: float
) -> Outcome:
    mix = Mix(channel, bearer)
    await mix.prepare()
    measured = await capacity(mix, concurrency)
    rate = max(1.0, measured * share)
    window = 60.0 if minutes >= 2 else max(5.0, minutes * 60 / 4)
    print(f"  soak: capacity {measured:.0f} calls/s; driving {rate:.0f} calls/s ({share:.0%}) for {minutes:g} min")
    windows: list[Minute] = []
    in_flight: set[asyncio.Task[None]] = set()
    began = time.perf_counter()
    end = began + minutes * 60
    for n in itertools.count():
        due = began + n / rate
        now = time.perf_counter()
        if due >= end:
            break
        if due > now:
            await asyncio.sleep(due - now)
        index = int((time.perf_counter() - began) // window)
        while len(windows) <= index:
            if windows:
                windows[-1].rss_mib, windows[-1].fds = rss_mib(pid), fd_count(pid)
            windows.append(Minute())
        if len(in_flight) >= MAX_IN_FLIGHT:  # the server fell far behind: count it, do not pile on
            windows[-1].errors += 1
            mix.errors["overload"] = mix.errors.get("overload", 0) + 1
            continue
        task = asyncio.create_task(_timed(mix, mix.pick(), windows[-1]))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    windows[-1].rss_mib, windows[-1].fds = rss_mib(pid), fd_count(pid)
    for i, w in enumerate(windows):
        print(
            f"    window {i + 1:2d}: {w.calls:6d} calls  {w.errors} errors  p99 {w.p99_ms:7.1f} ms  "
            f"RSS {w.rss_mib:6.1f} MiB  fds {w.fds}"
        )
    return report(windows, mix.errors, measured, rate)


def report(windows: list[Minute], errors: dict[str, int], measured: float, rate: float) -> Outcome:
    first, last = windows[0], windows[-1]
    total_errors = sum(w.errors for w in windows)
    p99_ratio = last.p99_ms / first.p99_ms if first.p99_ms else 0.0
    rss_ok = last.rss_mib <= first.rss_mib * 1.25 + 16
    fds_ok = last.fds <= first.fds * 1.25 + 16
    ok = total_errors == 0 and p99_ratio <= 1.5 and rss_ok and fds_ok
    print(
        f"  -> errors {total_errors} {dict(errors) or ''}; p99 {first.p99_ms:.1f} -> {last.p99_ms:.1f} ms "
        f"({p99_ratio:.2f}x, target <= 1.5x); RSS {first.rss_mib:.1f} -> {last.rss_mib:.1f} MiB; "
        f"fds {first.fds} -> {last.fds} {verdict(ok)}"
    )
    figures: dict[str, float] = {
        "capacity_rps": measured,
        "driven_rps": rate,
        "errors": total_errors,
        "p99_first_ms": first.p99_ms,
        "p99_last_ms": last.p99_ms,
        "p99_ratio": p99_ratio,
        "rss_first_mib": first.rss_mib,
        "rss_last_mib": last.rss_mib,
        "fds_first": first.fds,
        "fds_last": last.fds,
    }
    return Outcome(figures, "0 errors, p99 end <= 1.5x start, RSS and fds flat", ok)
