"""The audit trail: every security event written to the append-only audit table and logged as one line.

Kinds (the README lists them for operators): `register`, `login.succeeded`, `login.failed` (details
`reason`), `login.lockout`, `refresh.reuse_detected`, `logout`, `password.changed`,
`password.change_failed`, `user.role_changed` (`from_role`, `to_role`), `user.disabled`, `user.enabled`,
`session.revoked`, `service_token.issued` (`service`), `service_token.refused`, `admin.created`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from prometheus_client import Counter

from pynode.auth.domain import AuditEvent
from pynode.auth.ports import AuditStore
from pynode.core import tracing
from pynode.core.db import utcnow
from pynode.core.principal import ClientInfo, current_request_id

log = logging.getLogger("pynode.audit")

SWEEP_SECONDS = 3600.0


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

    async def sweep(self) -> int:
        """Drop events past the retention period (0 days keeps them for ever)."""
        if self.retention_days <= 0:
            return 0
        return await self.store.purge_older_than(utcnow() - timedelta(days=self.retention_days))
