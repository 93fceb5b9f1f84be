"""Model administration: what each provider holds, and pulls, deletes, loads and unloads, each audited.

Every provider is listed: one with a `ModelManager` (Ollama; the local provider) through it, any other from
the models it offers to the router, and changes to those are refused. At most a few pulls run at once and
one per model; a pull belongs to its caller's stream (cancelling the call stops it). Each change is audited
(`model.pulled`, `model.pull_failed`, `model.pull_cancelled`, `model.deleted`, `model.loaded`, `model.unloaded`,
and `model.<action>_failed`): a line on the `pynode.audit` logger and a counter here, and an event in auth's
audit trail (`ai.model.pulled`, ...) sent in the background, so a slow auth never holds up the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Protocol, TypeVar

from prometheus_client import Counter

from pynode.ai.providers.base import Provider
from pynode.ai.providers.managed import Inventory, ModelManager, PullProgress, StoredModel
from pynode.core.errors import DomainError, FailedPrecondition, NotFound, QuotaExceeded, QuotaViolation
from pynode.core.principal import ClientInfo, Principal, current_request_id
from pynode.core.tasks import TaskSet

log = logging.getLogger("pynode.audit")

_PAST = {"pull": "pulled", "delete": "deleted", "load": "loaded", "unload": "unloaded"}
MAX_PULLS = 2  # downloads at once: each takes a provider's bandwidth and disk for minutes
T = TypeVar("T")


class ListedModels:
    """A provider that does not manage its models here (OpenAI-compatible APIs, the built-in model): listed
    from what it offers the router; every change is refused."""

    actions: tuple[str, ...] = ()

    def __init__(self, provider: Provider) -> None:
        self.provider = provider.name
        self._source = provider

    async def inventory(self) -> list[StoredModel]:
        found = []
        for model in await self._source.models():
            name = model.id.partition("/")[2]
            if name == "*":  # the placeholder of a provider that did not answer
                raise FailedPrecondition(model.description or f"provider {self.provider} did not answer")
            # Served by the provider itself whenever it is available (the built-in model always is).
            found.append(
                StoredModel(
                    self.provider, name, self._source.kind, description=model.description, loaded=model.available
                )
            )
        return found

    async def show(self, name: str) -> StoredModel:
        for model in await self.inventory():
            if model.name == name:
                return model
        raise NotFound(f"provider {self.provider} has no model {name!r}", reason="MODEL_NOT_FOUND")

    def pull(self, name: str) -> AsyncGenerator[PullProgress, None]:
        raise self._refused("pull")

    async def delete(self, name: str) -> None:
        raise self._refused("delete")

    async def load(self, name: str) -> StoredModel:
        raise self._refused("load")

    async def unload(self, name: str) -> None:
        raise self._refused("unload")

    async def close(self) -> None:
        return None

    def _refused(self, action: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"provider {self.provider} ({self._source.kind}) does not {action} models from here; "
            "it manages them itself",
            reason="ACTION_NOT_SUPPORTED",
            metadata={"provider": self.provider, "action": action},
        )


class AuditSink(Protocol):
    """Where model changes are recorded besides the log (auth's audit trail, through RecordAuditEvent)."""

    async def record(self, kind: str, actor: str, address: str, details: dict[str, str]) -> None:
        """Record one event; raises DomainError when it cannot."""


class ModelAudit:
    """Audit of model changes, in the shape of auth's trail (kind, actor, subject, address, request)."""

    def __init__(self, sink: AuditSink | None = None) -> None:
        self.sink = sink
        self._sending = TaskSet("model-audit")
        self.counter = Counter(
            "devpynode_ai_model_actions",
            "Administrators' model changes (pull, delete, load, unload), by action and outcome.",
            ("action", "outcome"),
            registry=None,
        )

    def record(
        self, action: str, outcome: str, actor: Principal, client: ClientInfo, model_id: str, **details: str
    ) -> None:
        """One change: `outcome` is ok, failed or cancelled."""
        kind = f"model.{_PAST[action]}" if outcome == "ok" else f"model.{action}_{outcome}"
        self.counter.labels(action, outcome).inc()
        log.info(
            "audit %s",
            kind,
            extra={
                "audit_kind": kind,
                "actor": actor.subject,
                "subject": model_id,
                "address": client.address,
                "request_id": current_request_id(),
                **{f"detail_{k}": v for k, v in details.items()},
            },
        )
        if self.sink is not None and not self._sending.closing:
            # A task of its own: the change is done whatever auth says, and a cancelled pull's caller is gone.
            self._sending.spawn(self._send(kind, actor.subject, client.address, {"model": model_id, **details}))

    async def _send(self, kind: str, actor: str, address: str, details: dict[str, str]) -> None:
        assert self.sink is not None
        try:
            await self.sink.record(kind, actor, address, details)
        except DomainError as exc:
            log.warning("audit %s not recorded in the audit trail: %s", kind, exc.message)

    async def flush(self, seconds: float = 5.0) -> None:
        """Wait for the events being sent (tests, and before closing)."""
        await self._sending.wait(seconds)

    async def close(self) -> None:
        await self._sending.close(5.0)


class ModelAdministration:
    """The administrators' view of the providers' models."""

    def __init__(self, managers: dict[str, ModelManager], audit: ModelAudit, max_pulls: int = MAX_PULLS) -> None:
        self.managers = managers
        self.audit = audit
        self.max_pulls = max_pulls
        self._pulling: set[str] = set()

    def manager(self, provider: str) -> ModelManager:
        found = self.managers.get(provider)
        if found is None:
            raise NotFound(
                f"no provider {provider!r} (providers: {', '.join(sorted(self.managers))})",
                reason="PROVIDER_NOT_FOUND",
                metadata={"provider": provider[:100]},
            )
        return found

    async def inventory(self, provider: str | None = None) -> Inventory:
        """Every provider's models (or one provider's); a provider that fails is named unreachable."""
        chosen = [self.manager(provider)] if provider else list(self.managers.values())
        answers = await asyncio.gather(*(m.inventory() for m in chosen), return_exceptions=True)
        inventory = Inventory()
        for manager, answer in zip(chosen, answers, strict=True):
            if isinstance(answer, DomainError):
                inventory.unreachable.append(manager.provider)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                inventory.models.extend(sorted(answer, key=lambda m: m.name))
        return inventory

    async def show(self, provider: str, name: str) -> StoredModel:
        return await self.manager(provider).show(name)

    async def pull(
        self, actor: Principal, client: ClientInfo, provider: str, name: str
    ) -> AsyncGenerator[PullProgress, None]:
        """The pull's progress; audited when it ends, however it ends."""
        manager = self.manager(provider)
        model_id = f"{provider}/{name}"
        if model_id in self._pulling:
            raise FailedPrecondition(
                f"{model_id} is already being pulled; wait for that pull to end", reason="PULL_IN_PROGRESS"
            )
        if len(self._pulling) >= self.max_pulls:
            raise QuotaExceeded(
                f"{self.max_pulls} pulls are running; retry when one has ended",
                retry_after=30.0,
                reason="TOO_MANY_PULLS",
                violations=[QuotaViolation("pulls", f"at most {self.max_pulls} at once")],
            )
        self._pulling.add(model_id)
        outcome, details = "cancelled", {}
        try:
            async with contextlib.aclosing(manager.pull(name)) as steps:
                async for step in steps:
                    if step.done:
                        outcome = "ok"
                        details = {"digest": step.model.digest} if step.model and step.model.digest else {}
                    yield step
        except DomainError as exc:
            outcome, details = "failed", {"reason": exc.reason}
            raise
        finally:
            self._pulling.discard(model_id)
            self.audit.record("pull", outcome, actor, client, model_id, **details)

    async def delete(self, actor: Principal, client: ClientInfo, provider: str, name: str) -> None:
        await self._audited("delete", actor, client, provider, name, self.manager(provider).delete(name))

    async def load(self, actor: Principal, client: ClientInfo, provider: str, name: str) -> StoredModel:
        return await self._audited("load", actor, client, provider, name, self.manager(provider).load(name))

    async def unload(self, actor: Principal, client: ClientInfo, provider: str, name: str) -> None:
        await self._audited("unload", actor, client, provider, name, self.manager(provider).unload(name))

    async def _audited(
        self, action: str, actor: Principal, client: ClientInfo, provider: str, name: str, call: Awaitable[T]
    ) -> T:
        model_id = f"{provider}/{name}"
        try:
            result = await call
        except DomainError as exc:
            self.audit.record(action, "failed", actor, client, model_id, reason=exc.reason)
            raise
        self.audit.record(action, "ok", actor, client, model_id)
        return result

    async def close(self) -> None:
        for manager in self.managers.values():
            await manager.close()
