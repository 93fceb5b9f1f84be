"""The router: model ids and aliases to an ordered list of deployments, and the start of a generation on the
first of them that answers.

Aliases map to weighted deployments, tried in a weighted-random order, then their fallbacks, then the
request's own fallbacks. `default` always resolves: to the configured alias of that name, or else to each
provider's first available model and finally the built-in model. Retries and fallbacks happen only until the
first token: `start` returns a stream whose first chunk has arrived, and from then on the caller owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from pynode.ai.config import RouterConfig
from pynode.ai.domain import CAPABILITIES, EMBEDDINGS, TOOLS, VISION, Chunk, Embeddings, ModelInfo, Prompt
from pynode.ai.providers.base import Provider
from pynode.ai.routing import Breaker, Gate
from pynode.core import deadlines
from pynode.core.errors import (
    DeadlineExceeded,
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    Unavailable,
)

CATALOG_SECONDS = 10.0
_MAX_DEPTH = 8
_KEPT_DEPLOYMENTS = 256  # gates and breakers kept before idle, unlisted ones are forgotten
# Failures that say nothing about the deployment's health: the request itself is at fault.
_CALLER_FAULTS = (InvalidArgument,)
# Why a model is refused for a request that needs a capability it lacks: (field, reason, what it cannot do).
_REFUSALS = {
    TOOLS: ("tools", "TOOLS_NOT_SUPPORTED", "cannot call tools"),
    VISION: ("messages", "VISION_NOT_SUPPORTED", "cannot see images (it is not marked vision-capable)"),
    EMBEDDINGS: ("model", "EMBEDDINGS_NOT_SUPPORTED", "is not an embedding model"),
}


def unsupported(deployment: str, capability: str) -> InvalidArgument:
    """The refusal of a model for a request that needs `capability`."""
    field, reason, what = _REFUSALS[capability]
    return InvalidArgument(
        f"{deployment} {what}; choose a model with that capability (see ListModels capabilities)",
        [FieldViolation(field, f"{deployment} {what}", reason)],
        reason=reason,
        metadata={"model": deployment[:200], "capability": capability},
    )


@dataclass
class Started:
    """A generation that has produced its first chunk on `deployment`."""

    deployment: str
    provider: Provider
    first: Chunk
    rest: AsyncIterator[Chunk]
    gate: Gate
    breaker: Breaker
    tried: list[str]

    async def close(self, *, failed: bool = False) -> None:
        """Close the upstream stream and give the slot back; `failed` counts against the deployment."""
        try:
            await self.rest.aclose()  # type: ignore[attr-defined]
        finally:
            self.gate.release()
            if failed:
                self.breaker.failed()


class Router:
    """Resolves and starts generations over the configured providers."""

    def __init__(
        self,
        providers: dict[str, Provider],
        config: RouterConfig,
        *,
        max_concurrency: int,
        max_queue: int,
        first_token_seconds: float,
    ) -> None:
        self.providers = providers
        self.config = config
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.first_token_seconds = first_token_seconds
        self.gates: dict[str, Gate] = {}
        self.breakers: dict[str, Breaker] = {}
        self._catalog: tuple[float, list[ModelInfo]] = (0.0, [])
        self._catalog_lock = asyncio.Lock()
        self.random = random.Random()

    # --- the catalog ----------------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        """Every provider's models (probed at most every 10 s; an unreachable provider lists itself
        unavailable), then the aliases."""
        async with self._catalog_lock:
            at, known = self._catalog
            if time.monotonic() - at < CATALOG_SECONDS and known:
                return known
            listed = await asyncio.gather(*(p.models() for p in self.providers.values()))
            known = [
                replace(m, capabilities=tuple(sorted(self.capabilities(m.id)))) if not m.id.endswith("/*") else m
                for models in listed
                for m in models
            ]
            self._catalog = (time.monotonic(), known)
            return known

    def refresh_catalog(self) -> None:
        """Probe the providers again at the next listing (a provider that has just become ready or gone)."""
        self._catalog = (0.0, [])

    async def aliases(self) -> list[ModelInfo]:
        """The aliases as catalog entries: available when one of their candidates is."""
        entries = []
        available = {m.id for m in await self.models() if m.available}
        names = list(self.config.aliases)
        if "default" not in names:
            names.append("default")
        for name in names:
            targets = await self.candidates(name, ())
            description = "alias for " + ", ".join(targets)
            entries.append(ModelInfo(name, "alias", any(t in available for t in targets), description=description))
        return entries

    def capabilities(self, deployment: str) -> frozenset[str]:
        """What a deployment can do beyond text chat, from the routing configuration (the built-in model:
        everything, in its deterministic way)."""
        provider, _, model = deployment.partition("/")
        if provider == "builtin":
            return frozenset(CAPABILITIES)
        spec = self.config.providers.get(provider)
        if spec is None:
            return frozenset()
        found: set[str] = set()
        for pattern, capabilities in spec.capabilities.items():
            if fnmatch.fnmatchcase(model, pattern):
                found.update(capabilities)
        return frozenset(found)

    # --- resolution -------------------------------------------------------------------------------

    def _weighted(self, alias: str) -> list[str]:
        pool = [(d.model, d.weight) for d in self.config.aliases[alias].deployments]
        order = []
        while pool:
            pick = self.random.choices(range(len(pool)), weights=[w for _, w in pool])[0]
            order.append(pool.pop(pick)[0])
        return order

    async def _default(self) -> list[str]:
        firsts: dict[str, str] = {}
        for model in await self.models():
            if model.available and model.provider not in firsts and model.provider != "builtin":
                firsts[model.provider] = model.id
        return [*firsts.values(), "builtin/echo"]

    async def candidates(self, requested: str, fallbacks: tuple[str, ...] | list[str]) -> list[str]:
        """The deployments to try, in order, without repeats; NotFound for an unknown name."""
        ordered: list[str] = []

        async def add(target: str, depth: int) -> None:
            if depth > _MAX_DEPTH:
                return
            if "/" in target:
                if target not in ordered:
                    ordered.append(target)
            elif target in self.config.aliases:
                for deployment in self._weighted(target):
                    await add(deployment, depth + 1)
                for fallback in self.config.aliases[target].fallbacks:
                    await add(fallback, depth + 1)
            elif target == "default":
                for model in await self._default():
                    await add(model, depth + 1)
            else:
                raise NotFound(
                    f"no model or alias {target!r}: model ids are provider/name (see ListModels)",
                    reason="MODEL_NOT_FOUND",
                    metadata={"model": target[:200]},
                )

        await add(requested, 0)
        for fallback in fallbacks:
            await add(fallback, 0)
        return ordered

    # --- starting a generation ----------------------------------------------------------------------

    def gate(self, deployment: str) -> Gate:
        gate = self.gates.get(deployment)
        if gate is None:
            spec = self.config.providers.get(deployment.partition("/")[0])
            limit = spec.max_concurrency if spec and spec.max_concurrency else self.max_concurrency
            queue = spec.max_queue if spec and spec.max_queue is not None else self.max_queue
            if len(self.gates) >= _KEPT_DEPLOYMENTS:
                self._tidy()
            gate = self.gates[deployment] = Gate(deployment, limit, queue)
        return gate

    def listed(self) -> set[str]:
        """The deployments the catalog listed last (empty before the first listing)."""
        return {m.id for m in self._catalog[1]}

    def _tidy(self) -> None:
        """Forget idle, healthy deployments the catalog does not list once there are many: a caller may name
        models without end (`ollama/<anything>`), and each would keep a gate and a breaker for ever."""
        listed = self.listed()
        for deployment, gate in list(self.gates.items()):
            breaker = self.breakers.get(deployment)
            healthy = breaker is None or (breaker.count == 0 and breaker.allows())
            if deployment not in listed and gate.active == 0 and gate.waiting == 0 and healthy:
                del self.gates[deployment]
                self.breakers.pop(deployment, None)

    def breaker(self, deployment: str) -> Breaker:
        breaker = self.breakers.get(deployment)
        if breaker is None:
            circuit = self.config.circuit
            if len(self.breakers) >= _KEPT_DEPLOYMENTS:
                self._tidy()
            breaker = self.breakers[deployment] = Breaker(circuit.failures, circuit.cooldown_seconds)
        return breaker

    async def start(self, candidates: list[str], prompt: Prompt, lane: str = "") -> Started:
        """The first candidate that produces a first chunk; the first failure when none does. `lane` is whose
        turn it is when waiting for a slot (the user)."""
        failures: list[DomainError] = []
        tried: list[str] = []
        needs = prompt.needs()
        for deployment in candidates:
            missing = sorted(needs - self.capabilities(deployment))
            if missing:
                failures.append(unsupported(deployment, missing[0]))
                continue
            provider_name, _, model = deployment.partition("/")
            provider = self.providers.get(provider_name)
            if provider is None:
                failures.append(NotFound(f"no provider {provider_name!r}", reason="MODEL_NOT_FOUND"))
                continue
            breaker = self.breaker(deployment)
            if not breaker.allows():
                failures.append(
                    Unavailable(
                        f"{deployment} failed repeatedly and is cooling down",
                        retry_after=breaker.cooling_for(),
                        reason="MODEL_COOLING_DOWN",
                    )
                )
                continue
            gate = self.gate(deployment)
            try:
                await gate.acquire(lane)
            except QuotaExceeded as exc:
                failures.append(exc)
                continue
            tried.append(deployment)
            started = await self._first_chunk(
                deployment, provider, replace(prompt, model=model), gate, breaker, failures
            )
            if started is not None:
                started.tried = tried
                return started
        raise failures[0] if failures else NotFound("no model to answer", reason="MODEL_NOT_FOUND")

    async def _first_chunk(
        self,
        deployment: str,
        provider: Provider,
        prompt: Prompt,
        gate: Gate,
        breaker: Breaker,
        failures: list[DomainError],
    ) -> Started | None:
        budget = deadlines.outbound_timeout(self.first_token_seconds)
        stream = provider.stream(prompt)
        try:
            async with asyncio.timeout(budget):
                first = await anext(stream)
        except TimeoutError:
            await _close(stream)
            gate.release()
            if budget < self.first_token_seconds:  # the caller's deadline, not the model's slowness
                raise DeadlineExceeded(f"{deployment} sent no first token before the caller's deadline") from None
            breaker.failed()
            failures.append(
                Unavailable(f"{deployment} sent no first token in {self.first_token_seconds:g} s", reason="MODEL_SLOW")
            )
            return None
        except StopAsyncIteration:
            gate.release()
            failures.append(Unavailable(f"{deployment} answered nothing", reason="PROVIDER_UNAVAILABLE"))
            return None
        except _CALLER_FAULTS:
            await _close(stream)
            gate.release()
            raise  # the request is at fault: another model would refuse it too
        except DomainError as exc:
            await _close(stream)
            gate.release()
            if not isinstance(exc, NotFound):
                breaker.failed()
            failures.append(exc)
            return None
        except BaseException:  # cancelled while waiting: close upstream at once
            await _close(stream)
            gate.release()
            raise
        breaker.succeeded()  # "failed repeatedly" means in a row: an answer clears the count
        return Started(deployment, provider, first, stream, gate, breaker, [])


async def _close(stream: AsyncIterator[Chunk]) -> None:
    with contextlib.suppress(Exception):
        await stream.aclose()  # type: ignore[attr-defined]


class EmbeddingRouter:
    """Embed calls over the router's deployments: capability, breaker and gate as for a generation, but one
    request and one answer (no first-token race)."""

    def __init__(self, router: Router, timeout_seconds: float) -> None:
        self.router = router
        self.timeout_seconds = timeout_seconds

    async def embed(
        self, candidates: list[str], inputs: list[str], dimensions: int, lane: str = ""
    ) -> tuple[str, Embeddings]:
        """The first candidate that embeds `inputs`: its deployment and vectors; the first failure when none."""
        router = self.router
        failures: list[DomainError] = []
        for deployment in candidates:
            provider_name, _, model = deployment.partition("/")
            provider = router.providers.get(provider_name)
            if EMBEDDINGS not in router.capabilities(deployment):
                failures.append(unsupported(deployment, EMBEDDINGS))
                continue
            if provider is None:
                failures.append(NotFound(f"no provider {provider_name!r}", reason="MODEL_NOT_FOUND"))
                continue
            breaker = router.breaker(deployment)
            if not breaker.allows():
                failures.append(
                    Unavailable(
                        f"{deployment} failed repeatedly and is cooling down",
                        retry_after=breaker.cooling_for(),
                        reason="MODEL_COOLING_DOWN",
                    )
                )
                continue
            gate = router.gate(deployment)
            try:
                await gate.acquire(lane)
            except QuotaExceeded as exc:
                failures.append(exc)
                continue
            budget = deadlines.outbound_timeout(self.timeout_seconds)
            try:
                async with asyncio.timeout(budget):
                    result = await provider.embed(model, inputs, dimensions)
            except TimeoutError:
                if budget < self.timeout_seconds:
                    raise DeadlineExceeded(f"{deployment} sent no embeddings before the caller's deadline") from None
                breaker.failed()
                failures.append(Unavailable(f"{deployment} sent no embeddings in {budget:g} s", reason="MODEL_SLOW"))
                continue
            except _CALLER_FAULTS:
                raise
            except DomainError as exc:
                if not isinstance(exc, NotFound):
                    breaker.failed()
                failures.append(exc)
                continue
            finally:
                gate.release()
            breaker.succeeded()
            if len(result.vectors) != len(inputs):
                raise Unavailable(
                    f"{deployment} returned {len(result.vectors)} vectors for {len(inputs)} inputs",
                    reason="PROVIDER_UNAVAILABLE",
                )
            return deployment, result
        raise failures[0] if failures else NotFound("no model to embed with", reason="MODEL_NOT_FOUND")
