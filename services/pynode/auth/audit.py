"""The audit trail: every security event written to the append-only audit table and logged as one line.

Kinds (the README lists them for operators): `register`, `login.succeeded`, `login.failed` (details
`reason`), `login.lockout`, `refresh.reuse_detected`, `logout`, `password.changed`,
`password.change_failed`, `user.role_changed` (`from_role`, `to_role`), `user.disabled`, `user.enabled`,
`session.revoked`, `service_token.issued` (`service`), `service_token.refused`, `admin.created`; single sign-on's
`oidc.started`, `oidc.refused`, `identity.linked`, `identity.link_refused`, `identity.unlinked`,
`identity.unlink_refused`, `password.set`, `user.role_kept` (and `login.*`/`register` with `method: oidc`);
and the events other services report through RecordAuditEvent, whose kinds start with the reporting service's name
(`ai.model.pulled`).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from prometheus_client import Counter

from pynode.auth.domain import AuditEvent
from pynode.auth.ports import AuditStore
from pynode.core import tracing
from pynode.core.errors import FieldViolation, InvalidArgument
from pynode.core.principal import ClientInfo, Principal, current_request_id
from pynode.core.timestamps import utcnow

log = logging.getLogger("pynode.audit")

SWEEP_SECONDS = 3600.0
# A reported kind: lower-case words joined by dots; detail keys likewise short words.
_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_DETAIL_CHARS = 200


class AuditTrail:
    """Records security events; the one way the auth service writes to the audit table."""

    def __init__(self, store: AuditStore, retention_days: float) -> None:
        self.store = store
        self.retention_days = retention_days
        # Failures, lockouts and reuse per minute are what the alert rules watch.
        self.counter = Counter(
            "devpynode_auth_events", "Security events recorded in the audit trail, by kind.", ("kind",), registry=None
        )

    async def record(
        self, kind: str, client: ClientInfo, *, actor: str = "", subject: str = "", **details: str
    ) -> None:
        """Append one event and log it. `details` must never carry a secret: callers pass reasons and roles.
        With tracing on, the request's trace id is kept with the event (and its log line) too."""
        trace_id, _ = tracing.current_ids()
        if trace_id:
            details = {**details, "trace_id": trace_id}
        event = AuditEvent(0, utcnow(), kind, actor, subject, client.address, current_request_id(), details)
        self.counter.labels(kind).inc()
        log.info(
            "audit %s",
            kind,
            extra={
                "audit_kind": kind,
                "actor": actor,
                "subject": subject,
                "address": client.address,
                "request_id": event.request_id,
                **{f"detail_{k}": v for k, v in details.items()},
            },
        )
        await self.store.add(event)

    async def record_reported(
        self, caller: Principal, kind: str, actor: str, subject: str, address: str, details: dict[str, str]
    ) -> None:
        """An event a service witnessed (its service token is the caller): the kind's first word must name that
        service (a process serving several holds a token naming them all, `service:ai+chat`), never auth."""
        services = set(caller.subject.removeprefix("service:").split("+")) - {"auth"}
        violations = []
        if not _KIND.fullmatch(kind) or kind.split(".", 1)[0] not in services:
            violations.append(
                FieldViolation("kind", "must be the calling service's name and lower-case words joined by dots")
            )
        for key, value in details.items():
            if not _DETAIL_KEY.fullmatch(key) or len(value) > MAX_DETAIL_CHARS:
                violations.append(
                    FieldViolation(f"details[{key[:32]!r}]", "keys are short lower-case words, values 200 characters")
                )
        if violations:
            raise InvalidArgument("the audit event has invalid fields", violations)
        await self.record(kind, ClientInfo("", "", address or None), actor=actor, subject=subject, **details)

    async def sweep(self) -> int:
        """Drop events past the retention period (0 days keeps them for ever)."""
        if self.retention_days <= 0:
            return 0
        return await self.store.purge_older_than(utcnow() - timedelta(days=self.retention_days))
