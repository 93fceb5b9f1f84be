"""The soak scenario: mixed traffic at a stated share of measured capacity for a stated time.

First the capacity of the mix is measured (closed loop, the bench's concurrency, a few seconds); then calls are
started at `share` x that rate (open loop: a late call does not delay the next one) for `minutes`. The mix:
GetCurrentUser 40%, ListConversations 25%, SendMessage to builtin/echo read to its end 15%, a 4 KiB upload 10%,
then its download and delete 10%. Each minute gives its p99, and the server's RSS and open file descriptors.

Targets: zero errors; the last minute's p99 within 1.5x of the first's; RSS and fds flat (the last minute's
within 1.25x of the first's, plus 16 MiB / 16 fds of slack for small absolute numbers).

The bench user's session is kept like a real client keeps it: `Credentials` renews the access token with
RefreshToken (the refresh token rotates: each is used once) when a fifth of its lifetime is left, so a soak
longer than the access token's lifetime (15 minutes by default) measures the server, not expired tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import math
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
from google.protobuf import timestamp_pb2

REFRESH_LEFT = 0.2  # renew the access token when this share of its lifetime is left (at least REFRESH_MARGIN)
REFRESH_MARGIN = 10.0
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
        return percentile_ms(self.latencies, 0.99)


def percentile_ms(latencies: list[float], q: float) -> float:
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The process's resident set (or, with field="VmHWM", its peak so far) in MiB."""
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115 - a tiny /proc read
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


class Credentials:
    """The bench user's token pair, renewed before the access token expires (RefreshToken, which rotates the
    refresh token); calls read `bearer` at their start, so each carries the newest access token."""

    def __init__(self, channel: grpc.aio.Channel, tokens: auth_pb2.TokenPair) -> None:
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._tokens = tokens
        self._issued = time.time()
        self.bearer: list[tuple[str, str]] = [("authorization", f"Bearer {tokens.access_token}")]
        self.refreshes = 0
        self.failures: dict[str, int] = {}

    def due_in(self) -> float:
        """Seconds until the access token should be renewed."""
        expires = _seconds(self._tokens.access_token_expires_at)
        lifetime = max(0.0, expires - self._issued)
        return expires - max(REFRESH_MARGIN, REFRESH_LEFT * lifetime) - time.time()

    async def refresh(self) -> None:
        request = auth_pb2.RefreshTokenRequest(refresh_token=self._tokens.refresh_token)
        issued = time.time()
        response = await self._auth.RefreshToken(request, timeout=10)
        self._tokens, self._issued = response.tokens, issued
        self.bearer = [("authorization", f"Bearer {response.tokens.access_token}")]
        self.refreshes += 1

    async def keep_fresh(self) -> None:
        """Renew for as long as the soak runs (cancel it to stop); a failed renewal is counted and retried."""
        while True:
            await asyncio.sleep(max(0.0, self.due_in()))
            try:
                await self.refresh()
            except grpc.aio.AioRpcError as error:
                key = f"refresh:{error.code().name}"
                self.failures[key] = self.failures.get(key, 0) + 1
                await asyncio.sleep(1.0)


class Mix:
    """The mixed calls as the bench user; uploads are downloaded and deleted later, so storage stays flat."""

    def __init__(self, channel: grpc.aio.Channel, credentials: Credentials) -> None:
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.chat = chat_pb2_grpc.ChatServiceStub(channel)
        self.files = files_pb2_grpc.FileServiceStub(channel)
        self.credentials = credentials
        self.conversation = ""
        self.uploaded: list[str] = []
        self.errors: dict[str, int] = {}
        self.examples: list[str] = []
        self.latencies: dict[str, list[float]] = {}  # per kind, over the whole soak
        weights = [w for _, w in MIX]
        self.pick: Callable[[], str] = lambda: random.choices([n for n, _ in MIX], weights)[0]

    async def prepare(self) -> None:
        created = await self.chat.CreateConversation(
            chat_pb2.CreateConversationRequest(title="soak", model="builtin/echo"), metadata=self.bearer
        )
        self.conversation = created.conversation.id

    @property
    def bearer(self) -> list[tuple[str, str]]:
        return self.credentials.bearer

    async def call(self, kind: str) -> None:
        if kind == "me":
            await self.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=self.bearer)
        elif kind == "list":
            await self.chat.ListConversations(chat_pb2.ListConversationsRequest(page_size=10), metadata=self.bearer)
        elif kind == "send":
            request = chat_pb2.SendMessageRequest(conversation_id=self.conversation, text="soak " * 8)
            async for _ in self.chat.SendMessage(request, metadata=self.bearer):
                pass
        elif kind == "upload":
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


EXAMPLES = 5  # unexpected failures kept with their request id, to find them in the server's log


async def _timed(mix: Mix, picked: str, minute: Minute) -> None:
    # Nothing left to download: an upload instead, counted as one (not as a download's failure or success).
    kind = "upload" if picked == "download" and not mix.uploaded else picked
    started = time.perf_counter()
    try:
        await mix.call(kind)
    except grpc.aio.AioRpcError as error:
        minute.errors += 1
        key = f"{kind}:{error.code().name}"
        mix.errors[key] = mix.errors.get(key, 0) + 1
        if len(mix.examples) < EXAMPLES:
            ids = [str(v) for k, v in (error.trailing_metadata() or ()) if k == "x-request-id"]
            mix.examples.append(f"{key} request {ids[0] if ids else '?'}: {error.details()}")
        return
    elapsed = time.perf_counter() - started
    minute.calls += 1
    minute.latencies.append(elapsed)
    mix.latencies.setdefault(kind, []).append(elapsed)


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
    channel: grpc.aio.Channel, pid: int, tokens: auth_pb2.TokenPair, concurrency: int, minutes: float, share: float
) -> Outcome:
    credentials = Credentials(channel, tokens)
    renewing = asyncio.create_task(credentials.keep_fresh())
    try:
        return await _soak(channel, pid, credentials, concurrency, minutes, share)
    finally:
        renewing.cancel()


async def _soak(
    channel: grpc.aio.Channel, pid: int, credentials: Credentials, concurrency: int, minutes: float, share: float
) -> Outcome:
    mix = Mix(channel, credentials)
    await mix.prepare()
    measured = await capacity(mix, concurrency)
    mix.errors.clear()  # the capacity run's, if any, are not the soak's (its windows never counted them)
    mix.examples.clear()
    mix.latencies.clear()
    rate = max(1.0, measured * share)
    window = 60.0 if minutes >= 2 else max(5.0, minutes * 60 / 4)
    print(f"  soak: capacity {measured:.0f} calls/s; driving {rate:.0f} calls/s ({share:.0%}) for {minutes:g} min")
    windows: list[Minute] = []
    windows_total = max(1, math.ceil(minutes * 60 / window - 1e-9))
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
        # The last call may start a hair past the last window's end: it belongs to that window, not to a new one
        # of one call (which would then be "the last minute" of the report).
        index = min(int((time.perf_counter() - began) // window), windows_total - 1)
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
    errors = {**mix.errors, **credentials.failures}
    for example in mix.examples:
        print(f"    failed: {example}")
    every = [latency for kind in mix.latencies.values() for latency in kind]
    for kind, latencies in [*sorted(mix.latencies.items()), ("all", every)]:
        print(
            f"    {kind:8s} {len(latencies):7d} calls  p50 {percentile_ms(latencies, 0.5):6.1f}  "
            f"p90 {percentile_ms(latencies, 0.9):6.1f}  p99 {percentile_ms(latencies, 0.99):6.1f}  "
            f"max {1000 * max(latencies, default=0.0):7.1f} ms"
        )
    peak = max(rss_mib(pid, "VmHWM"), *(w.rss_mib for w in windows))
    print(f"    access token renewed {credentials.refreshes} times; server RSS peak {peak:.1f} MiB")
    outcome = report(windows, errors, measured, rate)
    outcome.figures.update(
        {
            "refreshes": credentials.refreshes,
            "rss_peak_mib": peak,
            "p50_ms": percentile_ms(every, 0.5),
            "p90_ms": percentile_ms(every, 0.9),
            "p99_ms": percentile_ms(every, 0.99),
        }
    )
    return outcome


def report(windows: list[Minute], errors: dict[str, int], measured: float, rate: float) -> Outcome:
    first, last = windows[0], windows[-1]
    total_errors = sum(w.errors for w in windows) + sum(n for k, n in errors.items() if k.startswith("refresh:"))
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
