"""AI router use cases: list models, generate (routing, cache, relay, usage), embed, and usage totals.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pynode.ai.cache import CachedAnswer, ResponseCache, group_words, request_key
from pynode.ai.domain import (
    CANCELLED,
    ERROR,
    LENGTH,
    STOP,
    TIME_LIMIT,
    TOOL_CALLS,
    Delta,
    Finished,
    Generation,
    Image,
    Message,
    ModelInfo,
    Prompt,
    Sampling,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    UsageTotal,
)
from pynode.ai.metrics import AIMetrics
from pynode.ai.ports import PictureFiles, UsageLedger
from pynode.ai.relay import Relay
from pynode.ai.router import EmbeddingRouter, Router, Started
from pynode.ai.tools import assemble, image_type, whole
from pynode.core.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from pynode.core.kv import KeyValueStore
from pynode.core.limits import Allowance, FixedWindow, Quota, Reservation, Slots
from pynode.core.principal import Principal
from pynode.core.tasks import TaskSet
from pynode.core.timestamps import utcnow

log = logging.getLogger("pynode.ai")

_BUDGET_TTL_SECONDS = 2 * 86400.0


@dataclass(frozen=True)
class GenerateCommand:
    """A Generate call as the service sees it."""

    model: str
    messages: tuple[Message, ...]
    sampling: Sampling
    fallbacks: tuple[str, ...] = ()
    no_cache: bool = False
    address: str = ""  # the end user's client address, when known (per-address limits and fair queueing)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)


@dataclass(frozen=True)
class Piece:
    """One message of the answer stream: text, or (the last) why it ended and the usage."""

    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    tool_calls: tuple[ToolCallDelta, ...] = ()


# An Embed answer must fit the gRPC message limit (2 MiB) with room for its framing: floats at 4 bytes each.
EMBED_ANSWER_BYTES = 3 * 512 * 1024
_FLOAT_BYTES = 4


@dataclass(frozen=True)
class Limits:
    """Per-user limits and defaults from settings."""

    default_max_tokens: int
    requests_per_minute: int
    tokens_per_day: int
    streams_per_user: int = 0  # generations one user may run at once (0: no limit)
    streams_per_address: int = 0  # generations running at once from one client address, all accounts (0: no limit)
    max_generation_seconds: float = 600.0  # longest one generation may hold a slot
    max_image_bytes: int = 4 * 1024 * 1024  # one picture sent to a vision model
    max_images: int = 16  # pictures in one request
    embed_max_inputs: int = 256  # texts in one Embed call
    embed_max_chars: int = 400_000  # characters in one Embed call
    embed_batch_size: int = 64  # texts in one provider call
    # All of one request's pictures together: a running generation holds them, so without it 16 references to one
    # 4 MiB file made a 2 kB request hold 64 MiB (issue 27 follow-up attack).
    max_request_image_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Embedded:
    """An Embed call's answer: one vector per input, the model that answered, the tokens it read."""

    model: str
    vectors: list[list[float]]
    prompt_tokens: int


def estimate_tokens(messages: tuple[Message, ...]) -> int:
    """About four characters a token: for a prompt the provider never counted (a cancelled stream)."""
    return sum(math.ceil(len(m.content) / 4) for m in messages)


def reserve_estimate(messages: tuple[Message, ...]) -> int:
    """A prompt's tokens as reserved against the budget: four characters or one word a token, whichever is
    more (above what a BPE tokenizer counts for ordinary text, and exactly the built-in model's count)."""
    return sum(max(math.ceil(len(m.content) / 4), len(m.content.split())) for m in messages)


_RATE = Quota("ai:requests_per_minute", "generations per user per minute")
_BUDGET = Quota("ai:tokens_per_day", "prompt and completion tokens per user per UTC day", "TOKEN_BUDGET_EXHAUSTED")
_NO_RESERVATION = Reservation("", 0, 0.0, settled=True)


def _lane(user_id: str, address: str) -> str:
    """Whose turn a queued request waits in: its client address's (all its accounts together), else its user's."""
    return f"address:{address}" if address else f"user:{user_id}"


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
        *,
        embeddings: EmbeddingRouter | None = None,
        pictures: PictureFiles | None = None,
    ) -> None:
        self.router = router
        self.embeddings = embeddings or EmbeddingRouter(router, 120.0)
        self.pictures = pictures
        self.cache = cache
        self.ledger = ledger
        self.metrics = metrics
        self.limits = limits
        self._bookkeeping = TaskSet("ai-bookkeeping")  # ledger rows and budget settlements outlive their calls
        self._rate = FixedWindow(kv)
        self._allowance = Allowance(kv)
        # One user's (or one address's many accounts') slow streams must not hold every slot the others need.
        self._streams = Slots(
            limits.streams_per_user,
            Quota("ai:streams_per_user", "generations running at once per user", "TOO_MANY_STREAMS"),
            f"at most {limits.streams_per_user} generations at once per user; wait for one to finish",
        )
        self._addresses = Slots(
            limits.streams_per_address,
            Quota("ai:streams_per_address", "generations running at once per client address", "TOO_MANY_STREAMS"),
            f"at most {limits.streams_per_address} generations at once from one address, whatever the account; "
            "wait for one to finish",
        )

    def running(self, user_id: str | None = None) -> int:
        """Generations streaming now in this process: one user's, or (None) everybody's."""
        return self._streams.held(user_id)

    # --- models -----------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Every provider's models, then the aliases."""
        return [*await self.router.models(), *await self.router.aliases()]

    # --- generation -------------------------------------------------------------------------------

    def _sampling(self, sampling: Sampling) -> Sampling:
        """The default max_tokens filled in; a caller-chosen pace must let max_tokens end within the ceiling."""
        if not sampling.max_tokens:
            sampling = replace(sampling, max_tokens=self.limits.default_max_tokens)
        ceiling = self.limits.max_generation_seconds
        pace = sampling.tokens_per_second
        if pace and sampling.max_tokens / pace > ceiling:
            slowest = math.ceil(sampling.max_tokens / ceiling)
            raise InvalidArgument(
                f"at {pace} tokens per second, {sampling.max_tokens} tokens would hold a model for longer than "
                f"the {ceiling:g} s a generation may; set tokens_per_second to at least {slowest} (or 0), or "
                "lower max_tokens",
                [FieldViolation("options.tokens_per_second", f"must be 0 or at least {slowest}", "OUT_OF_RANGE")],
            )
        return sampling

    async def _reserve(
        self, user_id: str, messages: tuple[Message, ...], sampling: Sampling
    ) -> tuple[Reservation, Sampling]:
        """Reserve the prompt's estimate plus max_tokens against today's budget, or what is left of it when that
        still leaves room for an answer (max_tokens is lowered to match); refuse when not even that fits."""
        if not self.limits.tokens_per_day:
            return _NO_RESERVATION, sampling
        budget = self.limits.tokens_per_day
        prompt = reserve_estimate(messages)
        now = datetime.now(UTC)
        key = f"ai:tokens:{user_id}:{_day(now)}"
        reservation = await self._allowance.reserve(
            key, prompt + sampling.max_tokens, budget, at_least=prompt + 1, ttl_seconds=_BUDGET_TTL_SECONDS
        )
        if reservation.granted:
            answer = reservation.granted - prompt
            return reservation, replace(sampling, max_tokens=min(sampling.max_tokens, answer))
        if prompt >= budget:
            message = f"this prompt alone is about {prompt} tokens, more than the daily budget of {budget}; shorten it"
        else:
            left = max(0, budget - await self._allowance.used(key))
            message = (
                f"this request needs about {prompt + 1} tokens (its prompt and at least one to answer) and "
                f"{left} of the daily budget of {budget} are left; it renews at 00:00 UTC"
            )
        raise _BUDGET.exceeded(message, _until_tomorrow(now))

    async def generate(self, caller: Principal, command: GenerateCommand) -> AsyncGenerator[Piece, None]:
        """Stream an answer: from the cache, or from the first deployment that answers."""
        began = time.perf_counter()
        user = caller.subject
        limit = self.limits.requests_per_minute
        await self._rate.hit(f"ai:rate:{user}", limit, _RATE, what=f"at most {limit} generations per minute")
        sampling = self._sampling(command.sampling)
        command = await self._with_pictures(user, command)
        with (
            self._streams.hold(user),
            self._addresses.hold(command.address) if command.address else contextlib.nullcontext(),
        ):
            reservation, sampling = await self._reserve(user, command.messages, sampling)
            try:
                async with contextlib.aclosing(
                    self._generate(caller, replace(command, sampling=sampling), began, reservation)
                ) as pieces:
                    async for piece in pieces:
                        yield piece
            finally:
                if not reservation.settled:  # ended before a generation was recorded (no model answered)
                    self._spawn(self._allowance.settle(reservation, 0))

    async def _generate(
        self, caller: Principal, command: GenerateCommand, began: float, reservation: Reservation
    ) -> AsyncGenerator[Piece, None]:
        sampling = command.sampling
        prompt = Prompt("", command.messages, sampling, command.tools, command.tool_choice)
        key = None
        hit = None
        if self.cache.enabled and sampling.deterministic and not command.no_cache:
            key = request_key(caller.subject, command.model, command.fallbacks, prompt)
            hit = await self.cache.get(key)
            if hit is not None:
                self._lookup(hit.model, "hit")
                async with contextlib.aclosing(self._replay(caller, command, hit, began, reservation)) as replayed:
                    async for piece in replayed:
                        yield piece
                return
        candidates = await self.router.candidates(command.model, command.fallbacks)
        started = await self.router.start(candidates, prompt, _lane(caller.subject, command.address))
        if key is not None:
            self._lookup(started.deployment, "miss")
        # aclosing: a caller that goes away ends the relay (and the upstream request) at once.
        async with contextlib.aclosing(
            self._relay(caller, command, prompt, started, began, key, reservation)
        ) as relayed:
            async for piece in relayed:
                yield piece

    async def _with_pictures(self, user_id: str, command: GenerateCommand) -> GenerateCommand:
        """Pictures checked (type from their bytes, size, count) and those given by file id read for the user."""
        count = sum(len(m.images) for m in command.messages)
        if not count:
            return command
        if count > self.limits.max_images:
            raise InvalidArgument(
                f"{count} images in one request; at most {self.limits.max_images}",
                [FieldViolation("messages.images", f"at most {self.limits.max_images} in all", "TOO_MANY")],
            )
        limit = self.limits.max_image_bytes
        total_limit = self.limits.max_request_image_bytes
        by_file: dict[str, bytes] = {}  # a file named twice is read once and held once
        total = 0
        messages = []
        for i, message in enumerate(command.messages):
            images = []
            for j, image in enumerate(message.images):
                where = f"messages[{i}].images[{j}]"
                data = image.data
                if image.file_id and image.file_id in by_file:
                    data = by_file[image.file_id]
                elif image.file_id:
                    if self.pictures is None:
                        raise Unavailable("pictures by file id need the files service", reason="FILES_UNAVAILABLE")
                    data = by_file[image.file_id] = await self.pictures.read(image.file_id, user_id, limit)
                    total += len(data)
                else:
                    total += len(data)
                if total > total_limit:
                    raise InvalidArgument(
                        f"the pictures of one request are more than {total_limit} bytes together",
                        [FieldViolation("messages.images", f"at most {total_limit} bytes in all", "TOO_LARGE")],
                        reason="IMAGES_TOO_LARGE",
                    )
                if len(data) > limit:
                    raise InvalidArgument(
                        f"{where} is {len(data)} bytes; at most {limit} are sent to a model",
                        [FieldViolation(where, f"at most {limit} bytes", "TOO_LARGE")],
                        reason="IMAGE_TOO_LARGE",
                    )
                media_type = image_type(data)
                if media_type is None:
                    raise InvalidArgument(
                        f"{where} is not a PNG, JPEG, GIF or WebP picture",
                        [FieldViolation(where, "must be a PNG, JPEG, GIF or WebP picture", "NOT_AN_IMAGE")],
                        reason="NOT_AN_IMAGE",
                    )
                images.append(Image(media_type, data))
            messages.append(replace(message, images=tuple(images)) if images else message)
        return replace(command, messages=tuple(messages))

    def _lookup(self, deployment: str, result: str) -> None:
        """Count a cache lookup under the deployment that answered (never the name asked for: a caller could
        invent names without end, one time series each)."""
        provider, _, model = deployment.partition("/")
        self.metrics.cache.labels(provider, model, result).inc()

    async def _relay(
        self,
        caller: Principal,
        command: GenerateCommand,
        prompt: Prompt,
        started: Started,
        began: float,
        key: str | None,
        reservation: Reservation,
    ) -> AsyncGenerator[Piece, None]:
        deployment = started.deployment
        generation = Generation(caller.subject, command.model, deployment, api_key_id=caller.api_key_id)
        relay = Relay(started.rest)
        # The slot is held no longer than the ceiling, however slowly the model (or a paced echo) writes: one
        # timer per generation, not one per message.
        ceiling = asyncio.get_running_loop().call_later(self.limits.max_generation_seconds, relay.expire)
        answer: list[str] | None = [] if key else None
        calls: list[ToolCallDelta] = []  # every tool-call piece (for the cache)
        first_deltas = 0
        first_at: float | None = None
        finished = started.first if isinstance(started.first, Finished) else None
        try:
            if isinstance(started.first, Delta):
                first_deltas = started.first.tokens
                first_at = time.perf_counter()
                if answer is not None:
                    answer.append(started.first.text)
                calls.extend(started.first.tool_calls)
                yield Piece(started.first.text, deployment, tool_calls=started.first.tool_calls)
            while finished is None:
                text = await relay.next()
                if text is None and relay.expired and not relay.done:
                    finished = Finished(TIME_LIMIT)
                    break
                if text is None:
                    if relay.error is not None:
                        raise relay.error
                    finished = relay.finished
                    if finished is None:
                        raise Unavailable(f"{deployment} ended the stream early", reason="PROVIDER_UNAVAILABLE")
                    break
                if answer is not None:
                    answer.append(text)
                pieces = relay.take_calls()
                if pieces:
                    calls.extend(pieces)
                yield Piece(text, deployment, tool_calls=pieces)
            generation.finish_reason = finished.reason
            self._count(generation, prompt, finished, first_deltas + relay.deltas)
            yield Piece("", deployment, finished.reason, generation.prompt_tokens, generation.completion_tokens)
            if key is not None and answer is not None and finished.reason in (STOP, LENGTH, TOOL_CALLS):
                cached = CachedAnswer(
                    deployment,
                    "".join(answer),
                    finished.reason,
                    generation.prompt_tokens,
                    generation.completion_tokens,
                    [[c.id, c.name, c.arguments] for c in assemble(calls)],
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
            ceiling.cancel()
            # Nested: a cancellation that lands while the upstream is being closed (a client hanging up right
            # after the last piece) must still give the slot back and record the usage, or the slot leaks.
            try:
                await relay.stop()
            finally:
                try:
                    await started.close(failed=generation.finish_reason == ERROR)
                finally:
                    if generation.finish_reason == CANCELLED:
                        self._count(generation, prompt, relay.finished, first_deltas + relay.deltas)
                    generation.duration_ms = (time.perf_counter() - began) * 1000
                    if first_at is not None:
                        generation.time_to_first_token_ms = (first_at - began) * 1000
                    self._finish(generation, started.provider.name, first_at, reservation)

    def _count(self, generation: Generation, prompt: Prompt, finished: Finished | None, deltas: int) -> None:
        """The provider's own counts when it gave them; else what was read (a cancelled or cut stream)."""
        counted_prompt = finished.prompt_tokens if finished is not None else None
        counted_completion = finished.completion_tokens if finished is not None else None
        generation.prompt_tokens = counted_prompt if counted_prompt is not None else estimate_tokens(prompt.messages)
        generation.completion_tokens = counted_completion if counted_completion is not None else deltas

    async def _replay(
        self, caller: Principal, command: GenerateCommand, hit: CachedAnswer, began: float, reservation: Reservation
    ) -> AsyncGenerator[Piece, None]:
        generation = Generation(
            caller.subject,
            command.model,
            hit.model,
            hit.prompt_tokens,
            hit.completion_tokens,
            CANCELLED,
            True,
            api_key_id=caller.api_key_id,
        )
        first_at = None
        try:
            for text in group_words(hit.text):
                if first_at is None:
                    first_at = time.perf_counter()
                yield Piece(text, hit.model)
            if hit.tool_calls:
                if first_at is None:
                    first_at = time.perf_counter()
                yield Piece("", hit.model, tool_calls=whole(ToolCall(*c) for c in hit.tool_calls))
            generation.finish_reason = hit.finish_reason
            yield Piece("", hit.model, hit.finish_reason, hit.prompt_tokens, hit.completion_tokens, cached=True)
        finally:
            generation.duration_ms = (time.perf_counter() - began) * 1000
            if first_at is not None:
                generation.time_to_first_token_ms = (first_at - began) * 1000
            self._finish(generation, "cache", first_at, reservation)

    # --- embeddings -------------------------------------------------------------------------------

    def _embed_violations(self, inputs: list[str], dimensions: int) -> list[FieldViolation]:
        limits = self.limits
        out = []
        if dimensions and len(inputs) * dimensions * _FLOAT_BYTES > EMBED_ANSWER_BYTES:
            # Refused before any work: the answer could not be sent (an attack asked for 256 x 65,536 floats).
            out.append(
                FieldViolation(
                    "dimensions",
                    f"{len(inputs)} vectors of {dimensions} numbers exceed one answer "
                    f"({EMBED_ANSWER_BYTES // _FLOAT_BYTES} numbers in all); send fewer texts or fewer dimensions",
                    "TOO_LARGE",
                )
            )
        if len(inputs) > limits.embed_max_inputs:
            out.append(FieldViolation("inputs", f"at most {limits.embed_max_inputs} texts", "TOO_MANY"))
        out += [FieldViolation(f"inputs[{i}]", "must not be empty", "REQUIRED") for i, t in enumerate(inputs) if not t]
        total = sum(len(t) for t in inputs)
        if total > limits.embed_max_chars:
            out.append(
                FieldViolation("inputs", f"{total} characters; at most {limits.embed_max_chars} in all", "TOO_LONG")
            )
        return out

    async def _reserve_inputs(self, user_id: str, messages: tuple[Message, ...]) -> Reservation:
        """Reserve an Embed call's estimated tokens, all of them (nothing is generated to cut short)."""
        if not self.limits.tokens_per_day:
            return _NO_RESERVATION
        budget = self.limits.tokens_per_day
        want = reserve_estimate(messages)
        now = datetime.now(UTC)
        key = f"ai:tokens:{user_id}:{_day(now)}"
        reservation = await self._allowance.reserve(key, want, budget, at_least=want, ttl_seconds=_BUDGET_TTL_SECONDS)
        if reservation.granted or not want:
            return reservation
        left = max(0, budget - await self._allowance.used(key))
        raise _BUDGET.exceeded(
            f"these texts are about {want} tokens and {left} of the daily budget of {budget} are left; it renews "
            "at 00:00 UTC",
            _until_tomorrow(now),
        )

    async def embed(
        self, caller: Principal, model: str, inputs: list[str], dimensions: int = 0, address: str = ""
    ) -> Embedded:
        """Vectors of `inputs`, in batches of the configured size, under the same limits and ledger as Generate:
        the user's and the client address's running shares, and the deployment's queue in the address's lane
        (`address`: the end user's, when known), so many accounts from one address cannot hold it either."""
        violations = self._embed_violations(inputs, dimensions)
        if violations:
            raise InvalidArgument(
                "request has invalid fields: " + "; ".join(f"{v.field}: {v.description}" for v in violations),
                violations,
            )
        began = time.perf_counter()
        user = caller.subject
        limit = self.limits.requests_per_minute
        await self._rate.hit(f"ai:rate:{user}", limit, _RATE, what=f"at most {limit} generations per minute")
        candidates = await self.router.candidates(model, ())
        messages = tuple(Message("user", t) for t in inputs)
        reservation = await self._reserve_inputs(user, messages)
        spent = 0
        try:
            with (
                self._streams.hold(user),
                self._addresses.hold(address) if address else contextlib.nullcontext(),
            ):
                vectors: list[list[float]] = []
                deployment = ""
                counted: int | None = 0
                size = self.limits.embed_batch_size
                for start in range(0, len(inputs), size):
                    batch = inputs[start : start + size]
                    # Every batch to the deployment the first one chose: vectors of two models never mix.
                    deployment, result = await self.embeddings.embed(
                        [deployment] if deployment else candidates, batch, dimensions, _lane(user, address)
                    )
                    vectors += result.vectors
                    counted = (
                        None if counted is None or result.prompt_tokens is None else counted + result.prompt_tokens
                    )
            spent = counted if counted is not None else estimate_tokens(messages)
            numbers = sum(len(v) for v in vectors)
            if numbers * _FLOAT_BYTES > EMBED_ANSWER_BYTES:  # the model's own size, known only now
                raise InvalidArgument(
                    f"{len(vectors)} vectors of {numbers // max(1, len(vectors))} numbers are more than one answer "
                    "holds; send fewer texts at a time",
                    [FieldViolation("inputs", "too many texts for one answer at this model's size", "TOO_MANY")],
                )
        finally:
            self._spawn(self._allowance.settle(reservation, spent))
        generation = Generation(user, model, deployment, spent, 0, STOP, api_key_id=caller.api_key_id)
        generation.duration_ms = (time.perf_counter() - began) * 1000
        generation.created_at = utcnow()
        self._spawn(self.ledger.add(generation))
        return Embedded(deployment, vectors, spent)

    # --- bookkeeping --------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._bookkeeping.spawn(work)

    def _finish(self, generation: Generation, provider: str, first_at: float | None, reservation: Reservation) -> None:
        """Ledger row, budget settlement and metrics, in tasks of their own (the caller may be gone)."""
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
        # A cached answer costs nothing; otherwise the provider's counts (or the estimate) replace the reservation.
        spent = 0 if generation.cached else generation.prompt_tokens + generation.completion_tokens
        self._spawn(self._allowance.settle(reservation, spent))
        self._spawn(self.ledger.add(generation))

    async def drain(self) -> None:
        """Wait for pending ledger writes and settlements (tests read the ledger after it)."""
        await self._bookkeeping.wait(5.0)

    async def close(self) -> None:
        """At stop: let pending ledger writes and settlements end (5 s at most), cancel what is left."""
        await self._bookkeeping.close(5.0)

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
        target = self._usage_target(caller, start, end, user_id, all_users)
        models = await self.ledger.totals(target, start, end, "model")
        users = await self.ledger.totals(None, start, end, "user_id") if all_users else []
        return models, users

    async def usage_by_key(
        self, caller: Principal, start: datetime | None, end: datetime | None, user_id: str, all_users: bool
    ) -> list[UsageTotal]:
        """Totals per personal API key ("" for calls made without one), with the same rules as `usage`."""
        target = self._usage_target(caller, start, end, user_id, all_users)
        return await self.ledger.totals(target, start, end, "api_key_id")

    @staticmethod
    def _usage_target(
        caller: Principal, start: datetime | None, end: datetime | None, user_id: str, all_users: bool
    ) -> str | None:
        if (all_users or (user_id and user_id != caller.subject)) and caller.role != "admin":
            raise PermissionDenied("only admins see other users' usage", reason="ROLE_REQUIRED")
        if start is not None and end is not None and start >= end:
            raise InvalidArgument(
                "start_time must be before end_time", [FieldViolation("start_time", "must be before end_time")]
            )
        return None if all_users else (user_id or caller.subject)
