"""A home's installation at the centre: its gateways, devices, test alarms and device commands.

What the installer does at the gateway exists here too, for installers and admins of the
municipality:

- ``GET /v1/homes/{home}/installation`` shows each gateway of the home with its last
  heartbeat, the devices it last reported (room, place, profile, battery, link quality,
  last seen, state), its last test alarm with the round trip the gateway measured, and the
  device commands queued for it. ``{home}`` is the home's ref; ``?municipality=`` picks
  one when the user's municipalities share a ref.
- ``POST /v1/homes/{home}/installation/commands`` queues an ``add``, ``remove``,
  ``rename`` or ``move`` for the home's gateway. Commands travel in heartbeat answers,
  signed with the centre's receipt key (``trygg.wire.messages.sign_commands``), are applied
  by the gateway once each, and come back as results in its next heartbeat
  (``pending → delivered → applied | failed``). Only a gateway that reports an inventory
  (and so knows commands) is sent any.

The gateway reports its inventory in heartbeats when it changed (by digest) and every
15 minutes; :func:`exchange` stores it and answers with the digest it now holds.

**Test alarms** (``alarm.test``) are stored like any event and open an alarm that is
resolved at once by ``system`` with outcome ``test_alarm``: it never waits in an
operator's queue, yet the home's history shows it, and the installation view shows the
last one with its round trip. Roles are checked on every endpoint, every read and every
command is audited, and a home of another municipality is a 404 like one that does not exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, delete, insert, select, update

from response_center.alarms import SYSTEM_ACTOR, transition
from response_center.audit import AuditEntry, record_audit
from response_center.auth import Principal, require_role
from response_center.context import CenterContext, get_ctx
from response_center.db.dialect import upsert
from response_center.db.schema import (
    alarms,
    device_commands,
    gateways,
    homes,
    installation_devices,
    installation_reports,
    municipalities,
)
from response_center.errors import ApiError, describe_validation_error
from response_center.gateways import Gateway
from response_center.web import parse_object, raw_body, validate
from trygg.wire.clock import format_ts, parse_ts
from trygg.wire.messages import (
    DEVICE_NAME_PATTERN,
    IEEE_PATTERN,
    MAX_COMMANDS,
    CommandOp,
    DeviceCommand,
    Heartbeat,
    Inventory,
    sign_commands,
)

log = logging.getLogger("trygg.center.installations")

TEST_ALARM_TYPE = "alarm.test"
TEST_ALARM_OUTCOME = "test_alarm"
TEST_ALARM_NOTE = "test alarm from the gateway: resolved by the centre when it arrived"
OPEN_COMMAND_STATES = ("pending", "delivered")
COMMANDS_SHOWN = 50
PROFILE_PATTERN = r"^[a-z0-9_]+\.[A-Za-z0-9_.-]{1,120}$"


# --- test alarms (called by ingest) ---------------------------------------------------------


def resolve_test_alarms(
    conn: Connection, opened: Sequence[tuple[int, str]], now: datetime
) -> list[int]:
    """Resolve the just-opened alarms of type ``alarm.test`` at once (outcome ``test_alarm``).

    In the transaction that opened them, so no operator's queue ever shows one as open.
    """
    resolved: list[int] = []
    for alarm_id, alarm_type in opened:
        if alarm_type == TEST_ALARM_TYPE:
            transition(
                conn,
                alarm_id,
                "resolved",
                SYSTEM_ACTOR,
                now,
                None,
                TEST_ALARM_OUTCOME,
                TEST_ALARM_NOTE,
            )
            resolved.append(alarm_id)
    return resolved


# --- what a heartbeat brings and takes (called by supervision) ------------------------------


class Exchange(BaseModel):
    """What the heartbeat answer adds for the installation."""

    inventory_digest: str | None = None
    commands: list[dict[str, Any]] = Field(default_factory=list)
    commands_sig: str | None = None


def _store_inventory(
    conn: Connection, gateway_id: str, inventory: Inventory, now: datetime
) -> None:
    conn.execute(
        delete(installation_devices).where(installation_devices.c.gateway_id == gateway_id)
    )
    rows = []
    seen: set[str] = set()
    for device in inventory.devices:
        if device.name in seen:
            continue  # a name twice in one report: the first one stands
        seen.add(device.name)
        last_seen = None
        if device.last_seen is not None:
            try:
                last_seen = parse_ts(device.last_seen)
            except ValueError:
                last_seen = None
        rows.append(
            {
                "gateway_id": gateway_id,
                "name": device.name,
                "ieee": device.ieee,
                "profile": device.profile,
                "model": device.model,
                "room": device.room,
                "place": device.place,
                "allow_listed": device.allow_listed,
                "status": device.status,
                "reason": device.reason,
                "state": device.state,
                "battery": device.battery,
                "linkquality": device.linkquality,
                "last_seen_at": last_seen,
                "reported_at": now,
            }
        )
    if rows:
        conn.execute(insert(installation_devices), rows)
    conn.execute(
        upsert(
            conn,
            installation_reports,
            ["gateway_id"],
            lambda excluded: {
                "inventory_digest": excluded.inventory_digest,
                "inventory_at": excluded.inventory_at,
                "inventory_truncated": excluded.inventory_truncated,
            },
        ),
        [
            {
                "gateway_id": gateway_id,
                "inventory_digest": inventory.digest,
                "inventory_at": now,
                "inventory_truncated": inventory.truncated,
            }
        ],
    )


def exchange(
    ctx: CenterContext, conn: Connection, gateway: Gateway, beat: Heartbeat, now: datetime
) -> Exchange:
    """Store a verified heartbeat's installation parts; return the answer's.

    Runs in the heartbeat's transaction (after its replay check), so a replayed heartbeat
    changes nothing here either.
    """
    if beat.inventory is not None:
        _store_inventory(conn, gateway.id, beat.inventory, now)
    if beat.test_alarm is not None:
        report = beat.test_alarm
        conn.execute(
            upsert(
                conn,
                installation_reports,
                ["gateway_id"],
                lambda excluded: {
                    "test_event_id": excluded.test_event_id,
                    "test_rtt_ms": excluded.test_rtt_ms,
                    "test_receipt": excluded.test_receipt,
                    "test_reported_at": excluded.test_reported_at,
                },
            ),
            [
                {
                    "gateway_id": gateway.id,
                    "inventory_truncated": False,
                    "test_event_id": report.event_id,
                    "test_rtt_ms": report.rtt_ms,
                    "test_receipt": report.receipt,
                    "test_reported_at": now,
                }
            ],
        )
    for result in beat.command_results:
        changed = conn.execute(
            update(device_commands)
            .where(
                device_commands.c.id == result.id,
                device_commands.c.gateway_id == gateway.id,
                device_commands.c.state.in_(OPEN_COMMAND_STATES),
            )
            .values(state=result.status, finished_at=now, reason=result.reason)
        ).rowcount
        if changed:
            log.info("gateway %s: device command %d %s", gateway.id, result.id, result.status)
    digest = conn.execute(
        select(installation_reports.c.inventory_digest).where(
            installation_reports.c.gateway_id == gateway.id
        )
    ).scalar_one_or_none()
    if digest is None:
        return Exchange()  # an older gateway: it would refuse commands it cannot read
    commands = _deliver(conn, gateway.id, now)
    if not commands:
        return Exchange(inventory_digest=digest)
    return Exchange(
        inventory_digest=digest,
        commands=[c.model_dump(mode="json", exclude_none=True) for c in commands],
        commands_sig=sign_commands(gateway.id, commands, ctx.receipt_key, ctx.receipt_kid),
    )


def _deliver(conn: Connection, gateway_id: str, now: datetime) -> list[DeviceCommand]:
    rows = conn.execute(
        select(device_commands)
        .where(
            device_commands.c.gateway_id == gateway_id,
            device_commands.c.state.in_(OPEN_COMMAND_STATES),
        )
        .order_by(device_commands.c.id)
        .limit(MAX_COMMANDS)
    ).all()
    commands: list[DeviceCommand] = []
    for row in rows:
        try:
            params = json.loads(row.params)
            commands.append(
                DeviceCommand.model_validate(
                    {**params, "id": int(row.id), "gateway_id": gateway_id, "op": row.op}
                )
            )
        except (ValueError, ValidationError) as exc:
            log.error("device command %d is unreadable (%s); marked failed", row.id, exc)
            conn.execute(
                update(device_commands)
                .where(device_commands.c.id == row.id)
                .values(state="failed", finished_at=now, reason="unreadable at the centre")
            )
    pending = [c.id for c in commands]
    if pending:
        conn.execute(
            update(device_commands)
            .where(device_commands.c.id.in_(pending), device_commands.c.state == "pending")
            .values(state="delivered", delivered_at=now)
        )
    return commands


# --- finding the home -------------------------------------------------------------------------


def find_home(
    conn: Connection, principal: Principal, ref: str, municipality: str | None
) -> Any | None:
    """The home ``ref`` among the user's municipalities; 400 if several share the ref."""
    if not principal.municipality_ids:
        return None
    stmt = (
        select(homes, municipalities.c.code.label("municipality_code"))
        .join(municipalities, homes.c.municipality_id == municipalities.c.id)
        .where(homes.c.ref == ref, homes.c.municipality_id.in_(sorted(principal.municipality_ids)))
    )
    if municipality is not None:
        stmt = stmt.where(municipalities.c.code == municipality)
    found = conn.execute(stmt).all()
    if len(found) > 1:
        raise ApiError(
            400,
            "ambiguous_home",
            f"Several of your municipalities have a home {ref!r}; add ?municipality=CODE.",
        )
    return found[0] if found else None


def _not_found(ref: str) -> ApiError:
    return ApiError(404, "not_found", f"There is no home {ref!r}.")


# --- the view ---------------------------------------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def _device_view(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "ieee": row.ieee,
        "room": row.room,
        "place": row.place,
        "profile": row.profile,
        "model": row.model,
        "allow_listed": row.allow_listed,
        "status": row.status,
        "reason": row.reason,
        "state": row.state,
        "battery": row.battery,
        "linkquality": row.linkquality,
        "last_seen_at": _ts(row.last_seen_at),
        "reported_at": _ts(row.reported_at),
    }


def _command_view(row: Any) -> dict[str, Any]:
    try:
        params = json.loads(row.params)
    except ValueError:
        params = {}
    return {
        "id": int(row.id),
        "op": row.op,
        "name": row.name,
        "params": params,
        "state": row.state,
        "created_by": row.created_by,
        "created_at": _ts(row.created_at),
        "delivered_at": _ts(row.delivered_at),
        "finished_at": _ts(row.finished_at),
        "reason": row.reason,
    }


def _test_view(conn: Connection, gateway_id: str, report: Any | None) -> dict[str, Any] | None:
    row = conn.execute(
        select(alarms)
        .where(alarms.c.gateway_id == gateway_id, alarms.c.type == TEST_ALARM_TYPE)
        .order_by(alarms.c.opened_at.desc(), alarms.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    rtt_ms = receipt = None
    if report is not None and report.test_event_id == row.event_id:
        rtt_ms, receipt = report.test_rtt_ms, report.test_receipt
    return {
        "alarm_id": int(row.id),
        "event_id": row.event_id,
        "occurred_at": _ts(row.occurred_at),
        "stored_at": _ts(row.opened_at),
        "state": row.state,
        "outcome": row.outcome,
        "rtt_ms": rtt_ms,
        "receipt": receipt,
    }


def installation_view(conn: Connection, home: Any, now: datetime) -> dict[str, Any]:
    """The JSON of one home's installation (pure reads)."""
    rows = conn.execute(
        select(gateways).where(gateways.c.home_id == home.id).order_by(gateways.c.enrolled_at)
    ).all()
    shown: list[dict[str, Any]] = []
    for gw in rows:
        report = conn.execute(
            select(installation_reports).where(installation_reports.c.gateway_id == gw.id)
        ).first()
        devices = conn.execute(
            select(installation_devices)
            .where(installation_devices.c.gateway_id == gw.id)
            .order_by(installation_devices.c.allow_listed.desc(), installation_devices.c.name)
        ).all()
        commands = conn.execute(
            select(device_commands)
            .where(device_commands.c.gateway_id == gw.id)
            .order_by(device_commands.c.id.desc())
            .limit(COMMANDS_SHOWN)
        ).all()
        shown.append(
            {
                "id": gw.id,
                "status": gw.status,
                "hostname": gw.hostname,
                "enrolled_at": _ts(gw.enrolled_at),
                "last_heartbeat_at": _ts(gw.last_heartbeat_at),
                "last_event_at": _ts(gw.last_event_at),
                "offline": gw.offline,
                "inventory_at": _ts(report.inventory_at) if report is not None else None,
                "inventory_truncated": bool(report.inventory_truncated) if report else False,
                "devices": [_device_view(d) for d in devices],
                "last_test_alarm": _test_view(conn, gw.id, report),
                "commands": [_command_view(c) for c in commands],
            }
        )
    return {
        "home": {"ref": home.ref, "address": home.address, "municipality": home.municipality_code},
        "gateways": shown,
        "server_time": format_ts(now),
    }


# --- commands ---------------------------------------------------------------------------------


class CommandRequest(BaseModel):
    """``POST .../installation/commands``: one allow-list change for the home's gateway."""

    model_config = ConfigDict(extra="forbid")

    op: CommandOp
    name: str = Field(pattern=DEVICE_NAME_PATTERN)
    to: str | None = Field(default=None, pattern=DEVICE_NAME_PATTERN)
    profile: str | None = Field(default=None, pattern=PROFILE_PATTERN)
    room: str | None = Field(default=None, min_length=1, max_length=64)
    place: str | None = Field(default=None, min_length=1, max_length=128)
    ieee: str | None = Field(default=None, pattern=IEEE_PATTERN)
    gateway_id: str | None = Field(default=None, max_length=32)


def _target_gateway(conn: Connection, home_id: int, wanted: str | None) -> str:
    active = [
        str(r[0])
        for r in conn.execute(
            select(gateways.c.id)
            .where(gateways.c.home_id == home_id, gateways.c.status == "active")
            .order_by(gateways.c.enrolled_at)
        )
    ]
    if wanted is not None:
        if wanted not in active:
            raise ApiError(404, "not_found", f"This home has no active gateway {wanted!r}.")
        return wanted
    if not active:
        raise ApiError(409, "no_gateway", "This home has no active gateway to send it to.")
    if len(active) > 1:
        raise ApiError(
            409, "several_gateways", f"This home has {len(active)} gateways; name one (gateway_id)."
        )
    return active[0]


def queue_command(
    conn: Connection, home: Any, request: CommandRequest, actor: str, now: datetime
) -> dict[str, Any]:
    gateway_id = _target_gateway(conn, home.id, request.gateway_id)
    params = request.model_dump(mode="json", exclude_none=True, exclude={"op", "gateway_id"})
    params["issued_by"] = actor
    try:
        # The gateway's own rules for each op (add needs a profile, rename a target, ...).
        DeviceCommand.model_validate(
            {**params, "id": 1, "gateway_id": gateway_id, "op": request.op}
        )
    except ValidationError as exc:
        raise ApiError(400, "malformed", describe_validation_error(list(exc.errors()))) from exc
    command_id = conn.execute(
        insert(device_commands)
        .values(
            gateway_id=gateway_id,
            municipality_id=home.municipality_id,
            home_id=home.id,
            op=request.op,
            name=request.name,
            params=json.dumps(params, sort_keys=True),
            state="pending",
            created_by=actor,
            created_at=now,
        )
        .returning(device_commands.c.id)
    ).scalar_one()
    row = conn.execute(select(device_commands).where(device_commands.c.id == command_id)).one()
    return _command_view(row)


# --- the API ----------------------------------------------------------------------------------

router = APIRouter()

Installer = Annotated[Principal, Depends(require_role("installer", "admin"))]
Body = Annotated[bytes, Depends(raw_body)]


def _audit(
    conn: Connection,
    principal: Principal,
    action: str,
    now: datetime,
    home: Any | None,
    *,
    outcome: str = "ok",
    detail: str | None = None,
) -> None:
    record_audit(
        conn,
        [
            AuditEntry(
                now,
                principal.username,
                action,
                outcome,
                municipality_id=home.municipality_id if home is not None else None,
                home_id=home.id if home is not None else None,
                purpose="installation",
                detail=detail,
            )
        ],
    )


@router.get("/v1/homes/{home_ref}/installation")
def get_installation(
    request: Request, home_ref: str, principal: Installer, municipality: str | None = None
) -> dict[str, Any]:
    ctx = get_ctx(request)
    now = ctx.now()
    with ctx.engine.begin() as conn:
        home = find_home(conn, principal, home_ref, municipality)
        if home is None:
            _audit(
                conn, principal, "installation.read", now, None, outcome="not_found",
                detail=f"home {home_ref[:64]}",
            )  # fmt: skip
        else:
            view = installation_view(conn, home, now)
            _audit(conn, principal, "installation.read", now, home)
    if home is None:
        raise _not_found(home_ref)
    return view


@router.post("/v1/homes/{home_ref}/installation/commands", status_code=202)
def post_command(
    request: Request,
    home_ref: str,
    body: Body,
    principal: Installer,
    municipality: str | None = None,
) -> JSONResponse:
    ctx = get_ctx(request)
    now = ctx.now()
    wanted = validate(CommandRequest, parse_object(body))
    detail = f"{wanted.op} {wanted.name}"[:200]
    try:
        with ctx.engine.begin() as conn:
            home = find_home(conn, principal, home_ref, municipality)
            if home is None:
                raise _not_found(home_ref)
            command = queue_command(conn, home, wanted, principal.username, now)
            _audit(conn, principal, "installation.command", now, home, detail=detail)
    except ApiError as exc:
        with ctx.engine.begin() as conn:
            _audit(
                conn, principal, "installation.command", now, None, outcome=exc.reason[:16],
                detail=f"home {home_ref[:64]}: {detail}",
            )  # fmt: skip
        raise
    log.info("device command %d queued by %s: %s", command["id"], principal.username, detail)
    return JSONResponse({"command": command}, status_code=202)
