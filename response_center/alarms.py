"""Alarms: opened by ingest and supervision, handled by operators through a small state machine.

States and transitions (decided here, documented for the console and the journal):

    new ──acknowledge──▶ acknowledged ──resolve──▶ resolved
     └──────────────────resolve──────────────────▶

``new → resolved`` is allowed: an operator may settle an alarm in one step (a false alarm
cleared on the phone), and the supervisor clears a ``technical.gateway_offline`` alarm itself
when the gateway comes back. Anything else (acknowledging twice, touching a resolved alarm)
is a 409 with a reason. Every transition appends a history row saying who and when; each
change is a conditional UPDATE on the state that was read, so two operators racing on one
alarm get one success and one 409.

Roles: operators and admins read and act; nurses read only (direct-response municipalities
show them the queue); installers have no access to alarms. Users see only alarms of their
own municipalities; any other id is a 404, indistinguishable from one that does not exist.
Every read writes an audit row per alarm shown, naming the user, the alarm and the resident.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Select, exists, insert, select, update

from response_center.audit import AuditEntry, record_audit
from response_center.auth import Principal, require_role
from response_center.context import get_ctx
from response_center.db.schema import (
    alarm_transitions,
    alarms,
    events,
    homes,
    municipalities,
    residents,
)
from response_center.errors import ApiError
from response_center.web import parse_object, raw_body, validate
from trygg.wire.clock import format_ts

AlarmState = Literal["new", "acknowledged", "resolved"]
StateFilter = Literal["open", "new", "acknowledged", "resolved", "all"]

ALLOWED_FROM: dict[str, frozenset[str]] = {
    "acknowledged": frozenset({"new"}),
    "resolved": frozenset({"new", "acknowledged"}),
}
Outcome = Literal[
    "help_dispatched",
    "handled_by_phone",
    "false_alarm",
    "test_alarm",
    "no_action_needed",
    "technical_fixed",
    "other",
]
"""What an operator may record when resolving; the journal maps these to VKP outcomes."""
OPERATOR_OUTCOMES: tuple[str, ...] = get_args(Outcome)
SYSTEM_OUTCOMES = ("gateway_back", "cleared_by_device")
"""Recorded only by the centre itself (the supervisor, or a device's own ``_cleared``
event), never accepted from the API."""
SYSTEM_ACTOR = "system"


def opens_alarm(event_class: str, priority: int) -> bool:
    """Alarm-class events, and technical events of priority 2 or more urgent, open alarms."""
    return event_class == "alarm" or (event_class == "technical" and priority <= 2)


def transition_refusal(current: str, target: str) -> str | None:
    """Why ``current → target`` is not allowed, or None when it is."""
    if current in ALLOWED_FROM.get(target, frozenset()):
        return None
    if current == target:
        return f"already_{target}"
    if current == "resolved":
        return "already_resolved"
    return "invalid_transition"


# --- opening ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewAlarm:
    municipality_id: int
    home_id: int | None
    type: str
    priority: int
    occurred_at: datetime
    event_id: str | None = None
    gateway_id: str | None = None
    resident_ref: str | None = None
    vkp_alert_code: str | None = None
    device_id: str | None = None
    room: str | None = None
    clock_skew: bool = False


class ResidentIndex:
    """Residents of some homes, to name the person an alarm is about.

    A ``resident_ref`` from the gateway picks the resident of that home with that ref; with no
    (matching) ref, a home's only resident is meant; otherwise the alarm names no one.
    """

    def __init__(self, rows: Iterable[tuple[int, int, str | None]]) -> None:
        self._by_ref: dict[tuple[int, str], int] = {}
        self._by_home: dict[int, list[int]] = {}
        for resident_id, home_id, ref in rows:
            self._by_home.setdefault(home_id, []).append(resident_id)
            if ref is not None:
                self._by_ref[(home_id, ref)] = resident_id

    @classmethod
    def load(cls, conn: Connection, home_ids: Iterable[int | None]) -> ResidentIndex:
        ids = sorted({h for h in home_ids if h is not None})
        if not ids:
            return cls([])
        rows = conn.execute(
            select(residents.c.id, residents.c.home_id, residents.c.ref).where(
                residents.c.home_id.in_(ids)
            )
        )
        return cls((int(r.id), int(r.home_id), r.ref) for r in rows)

    def resolve(self, home_id: int | None, ref: str | None) -> int | None:
        if home_id is None:
            return None
        if ref is not None and (home_id, ref) in self._by_ref:
            return self._by_ref[(home_id, ref)]
        in_home = self._by_home.get(home_id, [])
        return in_home[0] if len(in_home) == 1 else None


def open_alarms(
    conn: Connection, items: Sequence[NewAlarm], now: datetime, actor: str
) -> list[int]:
    """Insert alarms in state ``new`` with their first history row; return their ids."""
    if not items:
        return []
    index = ResidentIndex.load(conn, (item.home_id for item in items))
    rows = [
        {
            "event_id": item.event_id,
            "gateway_id": item.gateway_id,
            "municipality_id": item.municipality_id,
            "home_id": item.home_id,
            "resident_id": index.resolve(item.home_id, item.resident_ref),
            "type": item.type,
            "priority": item.priority,
            "vkp_alert_code": item.vkp_alert_code,
            "device_id": item.device_id,
            "room": item.room,
            "state": "new",
            "occurred_at": item.occurred_at,
            "opened_at": now,
            "age_at_arrival_s": max(0, int((now - item.occurred_at).total_seconds())),
            "clock_skew": item.clock_skew,
        }
        for item in items
    ]
    result = conn.execute(insert(alarms).returning(alarms.c.id, sort_by_parameter_order=True), rows)
    ids = [int(row[0]) for row in result]
    conn.execute(
        insert(alarm_transitions),
        [
            {"alarm_id": i, "from_state": None, "to_state": "new", "actor": actor, "at": now}
            for i in ids
        ],
    )
    return ids


# --- clearing by the device ----------------------------------------------------------------

CLEARED_SUFFIX = "_cleared"
CLEARED_OUTCOME = "cleared_by_device"
OPEN_STATES = ("new", "acknowledged")


def cleared_type(event_class: str, event_type: str) -> str | None:
    """The technical alarm type a ``technical.<x>_cleared`` event clears, or None.

    Only technical conditions clear themselves: an alarm (a press, a fall, smoke) is
    closed by an operator, never by a sensor.
    """
    if event_class != "technical" or not event_type.endswith(CLEARED_SUFFIX):
        return None
    base = event_type[: -len(CLEARED_SUFFIX)]
    return base if base.startswith("technical.") and base.count(".") >= 1 else None


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A stored event as clearing needs it: which gateway, device, type and sequence."""

    gateway_id: str
    device_id: str | None
    type: str
    seq: int


def _same_device(column: Any, device_id: str | None) -> Any:
    return column.is_(None) if device_id is None else column == device_id


def resolve_cleared(
    conn: Connection,
    municipality_id: int,
    cleared: Sequence[DeviceEvent],
    opened: Sequence[tuple[int, DeviceEvent]],
    now: datetime,
) -> list[int]:
    """Resolve technical alarms their device has since cleared (outcome ``cleared_by_device``).

    ``cleared`` are newly stored ``<type>_cleared`` events: each resolves the open alarms of
    the same gateway, device and type that an *earlier* event (lower seq) opened. ``opened``
    are alarms just opened (id, event): one whose clearing is already stored with a higher
    seq (it overtook the raise on the way) is resolved at once. Alarms of other gateways or
    devices, and alarms opened by a later event, are never touched; running twice changes
    nothing more. Returns the ids resolved.
    """
    resolved: list[int] = []
    for alarm_id, raised in opened:
        later_clear = exists().where(
            events.c.gateway_id == raised.gateway_id,
            events.c.seq > raised.seq,
            events.c.type == raised.type + CLEARED_SUFFIX,
            _same_device(events.c.device_id, raised.device_id),
        )
        if conn.execute(select(later_clear)).scalar():
            transition(conn, alarm_id, "resolved", SYSTEM_ACTOR, now, None, CLEARED_OUTCOME)
            resolved.append(alarm_id)
    for clear in cleared:
        base = cleared_type("technical", clear.type)
        if base is None:
            continue
        stmt = (
            select(alarms.c.id)
            .join(events, alarms.c.event_id == events.c.event_id)
            .where(
                alarms.c.municipality_id == municipality_id,
                alarms.c.state.in_(OPEN_STATES),
                alarms.c.gateway_id == clear.gateway_id,
                alarms.c.type == base,
                _same_device(alarms.c.device_id, clear.device_id),
                events.c.seq < clear.seq,
            )
            .order_by(alarms.c.id)
        )
        for (alarm_id,) in conn.execute(stmt).all():
            transition(conn, int(alarm_id), "resolved", SYSTEM_ACTOR, now, None, CLEARED_OUTCOME)
            resolved.append(int(alarm_id))
    return resolved


# --- reading ----------------------------------------------------------------------------


def _alarm_query() -> Select[Any]:
    return select(
        alarms,
        municipalities.c.code.label("municipality_code"),
        homes.c.ref.label("home_ref"),
        homes.c.address.label("home_address"),
        residents.c.display_name.label("resident_name"),
    ).select_from(
        alarms.join(municipalities, alarms.c.municipality_id == municipalities.c.id)
        .outerjoin(homes, alarms.c.home_id == homes.c.id)
        .outerjoin(residents, alarms.c.resident_id == residents.c.id)
    )


def _ts(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def alarm_view(row: Any, now: datetime) -> dict[str, Any]:
    """The JSON an operator's console shows for one alarm (age computed at ``now``)."""
    return {
        "id": row.id,
        "type": row.type,
        "priority": row.priority,
        "state": row.state,
        "vkp_alert_code": row.vkp_alert_code,
        "municipality": row.municipality_code,
        "home": None if row.home_id is None else {"ref": row.home_ref, "address": row.home_address},
        "resident": None
        if row.resident_id is None
        else {"id": row.resident_id, "display_name": row.resident_name},
        "gateway_id": row.gateway_id,
        "event_id": row.event_id,
        "device_id": row.device_id,
        "room": row.room,
        "occurred_at": _ts(row.occurred_at),
        "opened_at": _ts(row.opened_at),
        "age_s": max(0, int((now - row.occurred_at).total_seconds())),
        "age_at_arrival_s": row.age_at_arrival_s,
        "clock_skew": row.clock_skew,
        "acknowledged_at": _ts(row.acknowledged_at),
        "acknowledged_by": row.acknowledged_by,
        "resolved_at": _ts(row.resolved_at),
        "resolved_by": row.resolved_by,
        "outcome": row.outcome,
        "note": row.note,
    }


STATE_SETS: dict[str, tuple[str, ...]] = {
    "open": ("new", "acknowledged"),
    "new": ("new",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "all": ("new", "acknowledged", "resolved"),
}


def list_alarms(
    conn: Connection, scope: frozenset[int], state: StateFilter, limit: int
) -> list[Any]:
    """Alarms in ``scope``: most urgent priority first, newest first within a priority."""
    if not scope:
        return []
    stmt = (
        _alarm_query()
        .where(alarms.c.municipality_id.in_(sorted(scope)))
        .where(alarms.c.state.in_(STATE_SETS[state]))
        .order_by(alarms.c.priority.asc(), alarms.c.opened_at.desc(), alarms.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(stmt))


def find_alarm(conn: Connection, scope: frozenset[int], alarm_id: int) -> Any | None:
    if not scope:
        return None
    stmt = _alarm_query().where(
        alarms.c.id == alarm_id, alarms.c.municipality_id.in_(sorted(scope))
    )
    return conn.execute(stmt).first()


def history(conn: Connection, alarm_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(alarm_transitions)
        .where(alarm_transitions.c.alarm_id == alarm_id)
        .order_by(alarm_transitions.c.id)
    )
    return [
        {
            "from": r.from_state,
            "to": r.to_state,
            "by": r.actor,
            "at": format_ts(r.at),
            "note": r.note,
        }
        for r in rows
    ]


# --- changing ---------------------------------------------------------------------------


def transition(
    conn: Connection,
    alarm_id: int,
    target: AlarmState,
    actor: str,
    now: datetime,
    scope: frozenset[int] | None,
    outcome: str | None = None,
    note: str | None = None,
) -> str:
    """Move one alarm to ``target``; return the state it left. 404 out of scope, 409 refused.

    ``scope`` None means any municipality (the supervisor acting for the system).
    """
    stmt = select(alarms.c.state, alarms.c.municipality_id).where(alarms.c.id == alarm_id)
    current = conn.execute(stmt.with_for_update()).first()
    if current is None or (scope is not None and current.municipality_id not in scope):
        raise ApiError(404, "not_found", f"There is no alarm {alarm_id}.")
    refusal = transition_refusal(current.state, target)
    if refusal is not None:
        raise ApiError(409, refusal, f"The alarm is {current.state}; it cannot become {target}.")
    values: dict[str, Any] = {"state": target}
    if target == "acknowledged":
        values.update(acknowledged_at=now, acknowledged_by=actor)
    else:
        values.update(resolved_at=now, resolved_by=actor, outcome=outcome)
    if note is not None:
        values["note"] = note
    changed = conn.execute(
        update(alarms)
        .where(alarms.c.id == alarm_id, alarms.c.state == current.state)
        .values(**values)
    ).rowcount
    if changed != 1:
        raise ApiError(409, "concurrent_change", "Someone else changed this alarm just now.")
    conn.execute(
        insert(alarm_transitions).values(
            alarm_id=alarm_id,
            from_state=current.state,
            to_state=target,
            actor=actor,
            at=now,
            note=note,
        )
    )
    return str(current.state)


# --- API --------------------------------------------------------------------------------


class AcknowledgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    note: str | None = Field(default=None, max_length=2000)


router = APIRouter()

Reader = Annotated[Principal, Depends(require_role("operator", "nurse", "admin"))]
"""Operators and admins act on alarms; nurses read them; installers have no access."""
Actor = Annotated[Principal, Depends(require_role("operator", "admin"))]
Body = Annotated[bytes, Depends(raw_body)]


def _read_audit(rows: Iterable[Any], actor: str, now: datetime, purpose: str) -> list[AuditEntry]:
    return [
        AuditEntry(
            at=now,
            actor=actor,
            action="alarm.read",
            municipality_id=row.municipality_id,
            home_id=row.home_id,
            resident_id=row.resident_id,
            alarm_id=row.id,
            purpose=purpose,
        )
        for row in rows
    ]


@router.get("/v1/alarms")
def get_alarms(
    request: Request,
    principal: Reader,
    state: StateFilter = "open",
    limit: int = 100,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    if not 1 <= limit <= 500:
        raise ApiError(400, "malformed", "limit must be between 1 and 500.")
    now = ctx.now()
    with ctx.engine.begin() as conn:
        rows = list_alarms(conn, principal.municipality_ids, state, limit)
        record_audit(
            conn,
            [
                AuditEntry(
                    now,
                    principal.username,
                    "alarm.list",
                    purpose="alarm_queue",
                    detail=f"state={state} shown={len(rows)}",
                ),
                *_read_audit(rows, principal.username, now, "alarm_queue"),
            ],
        )
    return {"alarms": [alarm_view(row, now) for row in rows], "server_time": format_ts(now)}


@router.get("/v1/alarms/{alarm_id}")
def get_alarm(
    request: Request,
    alarm_id: int,
    principal: Reader,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    now = ctx.now()
    with ctx.engine.begin() as conn:
        row = find_alarm(conn, principal.municipality_ids, alarm_id)
        if row is None:
            record_audit(
                conn,
                [AuditEntry(now, principal.username, "alarm.read", "not_found", alarm_id=alarm_id)],
            )
        else:
            record_audit(conn, _read_audit([row], principal.username, now, "alarm_card"))
            view = alarm_view(row, now)
            view["history"] = history(conn, alarm_id)
    if row is None:
        raise ApiError(404, "not_found", f"There is no alarm {alarm_id}.")
    return view


def _act(
    request: Request,
    principal: Principal,
    alarm_id: int,
    target: AlarmState,
    outcome: str | None,
    note: str | None,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    now = ctx.now()
    action = "alarm.acknowledge" if target == "acknowledged" else "alarm.resolve"
    try:
        with ctx.engine.begin() as conn:
            transition(
                conn,
                alarm_id,
                target,
                principal.username,
                now,
                principal.municipality_ids,
                outcome,
                note,
            )
            row = find_alarm(conn, principal.municipality_ids, alarm_id)
            if row is None:
                raise RuntimeError(f"alarm {alarm_id} vanished inside its own transaction")
            record_audit(
                conn,
                [
                    AuditEntry(
                        now,
                        principal.username,
                        action,
                        municipality_id=row.municipality_id,
                        home_id=row.home_id,
                        resident_id=row.resident_id,
                        alarm_id=alarm_id,
                        purpose="alarm_handling",
                        detail=outcome,
                    )
                ],
            )
    except ApiError as exc:
        with ctx.engine.begin() as conn:
            record_audit(
                conn,
                [AuditEntry(now, principal.username, action, exc.reason[:16], alarm_id=alarm_id)],
            )
        raise
    return alarm_view(row, now)


@router.post("/v1/alarms/{alarm_id}/acknowledge")
def acknowledge(
    request: Request,
    alarm_id: int,
    body: Body,
    principal: Actor,
) -> dict[str, Any]:
    req = validate(AcknowledgeRequest, parse_object(body) if body.strip() else {})
    return _act(request, principal, alarm_id, "acknowledged", None, req.note)


@router.post("/v1/alarms/{alarm_id}/resolve")
def resolve(
    request: Request,
    alarm_id: int,
    body: Body,
    principal: Actor,
) -> dict[str, Any]:
    req = validate(ResolveRequest, parse_object(body))
    return _act(request, principal, alarm_id, "resolved", req.outcome, req.note)
