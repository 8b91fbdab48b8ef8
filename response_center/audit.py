"""Audit and security logs: a table row (the evidence) plus a log line (for operations).

Log lines carry ids, kinds and reasons, never event data, names or personal numbers.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Connection, insert

from response_center.db.schema import audit_log, security_events

security_log = logging.getLogger("trygg.center.security")
audit_logger = logging.getLogger("trygg.center.audit")

MAX_DETAIL = 1000


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    at: datetime
    kind: str
    gateway_id: str | None = None
    source_ip: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    outcome: str = "ok"
    municipality_id: int | None = None
    home_id: int | None = None
    resident_id: int | None = None
    alarm_id: int | None = None
    purpose: str | None = None
    detail: str | None = None


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_DETAIL]


def record_security_events(conn: Connection, items: list[SecurityEvent]) -> None:
    """Store security events (in the caller's transaction) and log each one."""
    if not items:
        return
    conn.execute(
        insert(security_events),
        [{**asdict(item), "detail": _clip(item.detail)} for item in items],
    )
    for item in items:
        security_log.warning(
            "security event %s gateway=%s ip=%s: %s",
            item.kind,
            item.gateway_id or "-",
            item.source_ip or "-",
            _clip(item.detail) or "",
        )


def record_security_event(conn: Connection, item: SecurityEvent) -> None:
    record_security_events(conn, [item])


def record_audit(conn: Connection, entries: list[AuditEntry]) -> None:
    """Append audit rows in the caller's transaction: no read commits without its record."""
    if not entries:
        return
    conn.execute(insert(audit_log), [{**asdict(e), "detail": _clip(e.detail)} for e in entries])
    for entry in entries:
        audit_logger.info(
            "%s %s %s alarm=%s resident=%s",
            entry.actor,
            entry.action,
            entry.outcome,
            entry.alarm_id if entry.alarm_id is not None else "-",
            entry.resident_id if entry.resident_id is not None else "-",
        )
