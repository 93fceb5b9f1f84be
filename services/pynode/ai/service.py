"""AI router use cases: list models, generate (routing, cache, relay, usage), and usage totals.

Never imports grpc: the servicer translates protos, the edge maps errors. Every generation, whatever its
end (completed, cut by max_tokens, cancelled by the caller or its deadline, failed), leaves one ledger row
with the tokens produced; the row is written in a task of its own so that a caller going away cannot
stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pynode.ai.cache import CachedAnswer, ResponseCache, group_words, request_key
from pynode.ai.domain import (
    CANCELLED,
    ERROR,
    LENGTH,
    STOP,
    Delta,
    Finished,
    Generation,
    Message,
    ModelInfo,
    Prompt,
    Sampling,
    UsageTotal,
)
from pynode.ai.metrics import AIMetrics
from pynode.ai.ports import UsageLedger
from pynode.ai.relay import Relay
from pynode.ai.router import Router, Started
from pynode.core.db import utcnow
from pynode.core.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    QuotaExceeded,
    QuotaViolation,
    Unavailable,
)
from pynode.core.kv import KeyValueStore
from pynode.core.principal import Principal

log = logging.getLogger("pynode.ai")

RATE_WINDOW_SECONDS = 60.0
_BUDGET_TTL_SECONDS = 2 * 86400.0


@dataclass(frozen=True)
class GenerateCommand:
    """A Generate call as the service sees it."""

    model: str
    messages: tuple[Message, ...]
    sampling: Sampling
    fallbacks: tuple[str, ...] = ()
    no_cache: bool = False


@dataclass(frozen=True)
class Piece:
    """One message of the answer stream: text, or (the last) why it ended and the usage."""

    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@dataclass(frozen=True)
class Limits:
    """Per-user limits and defaults from settings."""

    default_max_tokens: int
    requests_per_minute: int
    tokens_per_day: int
    streams_per_user: int = 0  # generations one user may run at once (0: no limit)


def estimate_tokens(messages: tuple[Message, ...]) -> int:
    """About four characters a token: for a prompt the provider never counted (a cancelled stream)."""
    return sum(math.ceil(len(m.content) / 4) for m in messages)


def _day(now: datetime) -> str:
    return now.strftime("%Y%m%d")


def _until_tomorrow(now: datetime) -> float:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


class AIService:
    """The AI router's use cases."""

    def __init__(
        self,
        router: Router,
        cache: ResponseCache,
        ledger: UsageLedger,
        kv: KeyValueStore,
        metrics: AIMetrics,
        limits: Limits,
    ) -> None:
        self.router = router
        self.cache = cache
        self.ledger = ledger
        self._kv = kv
        self.metrics = metrics
        self.limits = limits
        self._writes: set[asyncio.Task[None]] = set()
        self._running: dict[str, int] = {}  # user id -> generations streaming now

    # --- models -----------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Every provider's models, then the aliases."""
        return [*await self.router.models(), *await self.router.aliases()]

    # --- generation -------------------------------------------------------------------------------

    async def _admit(self, user_id: str) -> None:
        """Per-user request rate and daily token budget (QuotaExceeded with QuotaFailure)."""
        if self.limits.requests_per_minute:
            count, ttl = await self._kv.incr(f"ai:rate:{user_id}", RATE_WINDOW_SECONDS)
            if count > self.limits.requests_per_minute:
                raise QuotaExceeded(
                    f"at most {self.limits.requests_per_minute} generations per minute; "
                    f"retry in {max(1, round(ttl))} s",
                    retry_after=ttl if ttl > 0 else RATE_WINDOW_SECONDS,
                    violations=[QuotaViolation("ai:requests_per_minute", "generations per user per minute")],
                )
        if self.limits.tokens_per_day:
            now = datetime.now(UTC)
            used = int(await self._kv.get(f"ai:tokens:{user_id}:{_day(now)}") or 0)
            if used >= self.limits.tokens_per_day:
                raise QuotaExceeded(
                    f"the daily budget of {self.limits.tokens_per_day} tokens is spent; it renews at 00:00 UTC",
                    retry_after=_until_tomorrow(now),
                    reason="TOKEN_BUDGET_EXHAUSTED",
                    violations=[
                        QuotaViolation("ai:tokens_per_day", "prompt and completion tokens per user per UTC day")
                    ],
                )

    async def generate(self, caller: Principal, command: GenerateCommand) -> AsyncGenerator[Piece, None]:
        """Stream an answer: from the cache, or from the first deployment that answers."""
        began = time.perf_counter()
        await self._admit(caller.subject)
        user = caller.subject
        if self.limits.streams_per_user and self._running.get(user, 0) >= self.limits.streams_per_user:
            # One user's slow streams must not hold every deployment slot the others need.
            raise QuotaExceeded(
                f"at most {self.limits.streams_per_user} generations at once per user; wait for one to finish",
                retry_after=1.0,
                reason="TOO_MANY_STREAMS",
                violations=[QuotaViolation("ai:streams_per_user", "generations running at once per user")],
            )
        self._running[user] = self._running.get(user, 0) + 1
        try:
            async with contextlib.aclosing(self._generate(caller, command, began)) as pieces:
                async for piece in pieces:
                    yield piece
        finally:
            left = self._running[user] - 1
            if left:
                self._running[user] = left
            else:
                del self._running[user]

    async def _generate(self, caller: Principal, command: GenerateCommand, began: float) -> AsyncGenerator[Piece, None]:
        sampling = command.sampling
        if not sampling.max_tokens:
            sampling = replace(sampling, max_tokens=self.limits.default_max_tokens)
        prompt = Prompt("", command.messages, sampling)
        key = None
        if self.cache.enabled and sampling.deterministic and not command.no_cache:
            key = request_key(caller.subject, command.model, command.fallbacks, prompt)
            hit = await self.cache.get(key)
            provider, _, name = command.model.rpartition("/")
            self.metrics.cache.labels(provider or "alias", name, "hit" if hit else "miss").inc()
            if hit is not None:
                async with contextlib.aclosing(self._replay(caller, command, hit, began)) as replayed:
                    async for piece in replayed:
                        yield piece
                return
        candidates = await self.router.candidates(command.model, command.fallbacks)
        started = await self.router.start(candidates, prompt)
        # aclosing: a caller that goes away ends the relay (and the upstream request) at once.
        async with contextlib.aclosing(self._relay(caller, command, prompt, started, began, key)) as relayed:
            async for piece in relayed:
                yield piece

    async def _relay(
        self,
        caller: Principal,
        command: GenerateCommand,
        prompt: Prompt,
        started: Started,
        began: float,
        key: str | None,
    ) -> AsyncGenerator[Piece, None]:
        deployment = started.deployment
        generation = Generation(caller.subject, command.model, deployment)
        relay = Relay(started.rest)
        answer: list[str] | None = [] if key else None
        first_deltas = 0
        first_at: float | None = None
        finished = started.first if isinstance(started.first, Finished) else None
        try:
            if isinstance(started.first, Delta):
                first_deltas = started.first.tokens
                first_at = time.perf_counter()
                if answer is not None:
                    answer.append(started.first.text)
                yield Piece(started.first.text, deployment)
            while finished is None:
                text = await relay.next()
                if text is None:
                    if relay.error is not None:
                        raise relay.error
                    finished = relay.finished
                    if finished is None:
                        raise Unavailable(f"{deployment} ended the stream early", reason="PROVIDER_UNAVAILABLE")
                    break
                if answer is not None:
                    answer.append(text)
                yield Piece(text, deployment)
            generation.finish_reason = finished.reason
            self._count(generation, prompt, finished, first_deltas + relay.deltas)
            yield Piece("", deployment, finished.reason, generation.prompt_tokens, generation.completion_tokens)
            if key is not None and answer is not None and finished.reason in (STOP, LENGTH):
                cached = CachedAnswer(
                    deployment, "".join(answer), finished.reason, generation.prompt_tokens, generation.completion_tokens
                )
                self._spawn(self.cache.put(key, cached))
        except (asyncio.CancelledError, GeneratorExit):
            generation.finish_reason = CANCELLED
            raise
        except DomainError as exc:
            # Output was sent already: no retry, no fallback (never duplicated text). The caller gets the
            # partial usage in a last message, then the error.
            generation.finish_reason = ERROR
            self._count(generation, prompt, None, first_deltas + relay.deltas)
            log.warning("generation on %s failed mid-stream: %s", deployment, exc.message)
            yield Piece("", deployment, ERROR, generation.prompt_tokens, generation.completion_tokens)
            raise
        finally:
            await relay.stop()
            await started.close(failed=generation.finish_reason == ERROR)
            if generation.finish_reason == CANCELLED:
                self._count(generation, prompt, relay.finished, first_deltas + relay.deltas)
            generation.duration_ms = (time.perf_counter() - began) * 1000
            if first_at is not None:
                generation.time_to_first_token_ms = (first_at - began) * 1000
            self._finish(generation, started.provider.name, first_at)

    def _count(self, generation: Generation, prompt: Prompt, finished: Finished | None, deltas: int) -> None:
        """The provider's own counts when it gave them; else what was read (a cancelled or cut stream)."""
        counted_prompt = finished.prompt_tokens if finished is not None else None
        counted_completion = finished.completion_tokens if finished is not None else None
        generation.prompt_tokens = counted_prompt if counted_prompt is not None else estimate_tokens(prompt.messages)
        generation.completion_tokens = counted_completion if counted_completion is not None else deltas

    async def _replay(
        self, caller: Principal, command: GenerateCommand, hit: CachedAnswer, began: float
    ) -> AsyncGenerator[Piece, None]:
        generation = Generation(
            caller.subject, command.model, hit.model, hit.prompt_tokens, hit.completion_tokens, CANCELLED, True
        )
        first_at = None
        try:
            for text in group_words(hit.text):
                if first_at is None:
                    first_at = time.perf_counter()
                yield Piece(text, hit.model)
            generation.finish_reason = hit.finish_reason
            yield Piece("", hit.model, hit.finish_reason, hit.prompt_tokens, hit.completion_tokens, cached=True)
        finally:
            generation.duration_ms = (time.perf_counter() - began) * 1000
            if first_at is not None:
                generation.time_to_first_token_ms = (first_at - began) * 1000
            self._finish(generation, "cache", first_at)

    # --- bookkeeping --------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("AI usage bookkeeping failed: %s", type(task.exception()).__name__)

    def _finish(self, generation: Generation, provider: str, first_at: float | None) -> None:
        """Ledger row, budget and metrics, in a task of its own (the caller may be gone)."""
        generation.created_at = utcnow()
        provider_label, _, model_label = generation.deployment.partition("/")
        labels = (provider_label or provider, model_label or generation.deployment)
        self.metrics.generations.labels(*labels, generation.finish_reason).inc()
        self.metrics.tokens.labels(*labels).inc(generation.completion_tokens)
        if generation.time_to_first_token_ms is not None:
            self.metrics.ttft.labels(*labels).observe(generation.time_to_first_token_ms / 1000)
            streaming = (generation.duration_ms - generation.time_to_first_token_ms) / 1000
            if streaming > 0 and generation.completion_tokens > 1:
                self.metrics.rate.labels(*labels).observe((generation.completion_tokens - 1) / streaming)
        self._spawn(self._record(generation))

    async def _record(self, generation: Generation) -> None:
        await self.ledger.add(generation)
        if self.limits.tokens_per_day and not generation.cached:
            spent = generation.prompt_tokens + generation.completion_tokens
            day = _day(datetime.now(UTC))
            await self._kv.incr(f"ai:tokens:{generation.user_id}:{day}", _BUDGET_TTL_SECONDS, spent)

    async def drain(self) -> None:
        """Wait for pending ledger writes (at shutdown)."""
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=5.0)

    # --- usage ----------------------------------------------------------------------------------------

    async def usage(
        self,
        caller: Principal,
        start: datetime | None,
        end: datetime | None,
        user_id: str,
        all_users: bool,
    ) -> tuple[list[UsageTotal], list[UsageTotal]]:
        """Totals per model (and per user with `all_users`) over [start, end); others' usage is for admins."""
        if (all_users or (user_id and user_id != caller.subject)) and caller.role != "admin":
            raise PermissionDenied("only admins see other users' usage", reason="ROLE_REQUIRED")
        if start is not None and end is not None and start >= end:
            raise InvalidArgument(
                "start_time must be before end_time", [FieldViolation("start_time", "must be before end_time")]
            )
        target = None if all_users else (user_id or caller.subject)
        models = await self.ledger.totals(target, start, end, "model")
        users = await self.ledger.totals(None, start, end, "user_id") if all_users else []
        return models, users
