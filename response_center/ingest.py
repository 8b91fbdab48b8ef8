"""``POST /v1/events``: verify signed events and store each exactly once, with a signed receipt.

The flow of one batch (ARCHITECTURE.md §4, standards.md §5.3):

1. Parse the body strictly (pure): a JSON object ``{"events": [{"event": {...}, "sig": ...}]}``
   of at most ``MAX_BATCH_EVENTS`` entries; anything else is a 400 (413 when too big).
2. The JWS ``kid`` names the gateway: all entries must carry the same one; an unknown key is a
   401, a revoked one a 403, both recorded as security events.
3. Verify every event (pure CPU, outside any transaction): floats, canonicalisation, the
   signature over the bytes we canonicalise, the model, and that ``gateway_id`` is the
   enrolled gateway's.
4. In one transaction, with the gateway's row locked: known event ids are duplicates (same
   ``stored_at`` as the first time); a seq taken by another event id is ``seq_reused``; a seq
   at or below ``highest_seq - gap_window`` is ``seq_too_old``; the rest are inserted with
   ``ON CONFLICT DO NOTHING`` so the UNIQUE constraints, not a racy check, decide. Alarms,
   devices and the gateway's replay state are written in the same transaction.
5. After commit, each receipt is signed with the centre key, one per event, in order.

Timestamps outside [now - 24 h, now + 5 min] are stored with ``clock_skew`` set; they never
make the centre drop an event, and an alarm shows its age to the operator instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import Connection, case, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from response_center.alarms import (
    DeviceEvent,
    NewAlarm,
    cleared_type,
    open_alarms,
    opens_alarm,
    resolve_cleared,
)
from response_center.audit import SecurityEvent, record_security_events
from response_center.context import CenterContext, client_ip, get_ctx
from response_center.db.dialect import insert_many_ignoring_conflicts, one_of, upsert
from response_center.db.schema import devices, events, gateways
from response_center.errors import ApiError, describe_validation_error
from response_center.gateways import Gateway, authenticate_gateway, load_gateway
from response_center.installations import resolve_test_alarms
from response_center.web import raw_body
from trygg.wire.canonical import CanonicalJsonError, parse_json_object
from trygg.wire.clock import format_ts, parse_ts
from trygg.wire.envelope import SignedEvent, verify_event
from trygg.wire.jws import JwsError, read_header
from trygg.wire.messages import MAX_BATCH_EVENTS
from trygg.wire.receipt import Receipt, sign_receipts

log = logging.getLogger("trygg.center.ingest")

STORE_ATTEMPTS = 3
MAX_REASON = 200


class BatchError(ValueError):
    """The batch as a whole is unusable; carries the HTTP status and a reason code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``{"event": ..., "sig": ...}`` of a batch, as received."""

    event: dict[str, Any]
    sig: str

    @property
    def claimed_event_id(self) -> str:
        value = self.event.get("event_id")
        return value[:64] if isinstance(value, str) else ""

    @property
    def claimed_seq(self) -> int | None:
        value = self.event.get("seq")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Checked:
    """An entry after verification: either a verified event or a rejection reason."""

    entry: Entry
    signed: SignedEvent | None
    reason: str | None = None
    security: bool = False


# --- pure parsing and checking ----------------------------------------------------------


def parse_batch(raw: bytes, max_events: int = MAX_BATCH_EVENTS) -> list[Entry]:
    """Parse a batch body into entries, or raise BatchError naming what is wrong."""
    try:
        body = parse_json_object(raw)
    except CanonicalJsonError as exc:
        raise BatchError(400, "malformed", f"The body is not a JSON object: {exc}") from exc
    items = body.get("events")
    if not isinstance(items, list):
        raise BatchError(400, "malformed", "The body must have an 'events' list.")
    extra = sorted(set(body) - {"events"})
    if extra:
        raise BatchError(400, "malformed", f"Unexpected members in the body: {extra[:5]}.")
    if len(items) > max_events:
        raise BatchError(
            413, "too_many_events", f"A batch holds at most {max_events} events; got {len(items)}."
        )
    entries: list[Entry] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BatchError(400, "malformed", f"events[{i}] is not an object.")
        event, sig = item.get("event"), item.get("sig")
        if not isinstance(event, dict) or not isinstance(sig, str) or set(item) != {"event", "sig"}:
            raise BatchError(
                400, "malformed", f"events[{i}] must be {{'event': object, 'sig': string}}."
            )
        entries.append(Entry(event, sig))
    return entries


def batch_kid(entries: list[Entry]) -> str:
    """The one JWS key id the batch's signatures carry; BatchError if none or several."""
    kids: set[str] = set()
    # One gateway signs every event with the same protected header: parse each once.
    for header in {entry.sig.partition(".")[0] for entry in entries}:
        try:
            kids.add(str(read_header(header + "..")["kid"]))
        except JwsError:
            continue
    if len(kids) > 1:
        raise BatchError(400, "mixed_kid", "All events of a batch must be signed by one key.")
    if not kids:
        raise BatchError(401, "unknown_gateway", "No event carries a readable signature.")
    return kids.pop()


def find_float(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first float in ``value``, or None."""
    if isinstance(value, float):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            found = find_float(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = find_float(item, f"{path}[{i}]")
            if found:
                return found
    return None


def _reason(code: str, detail: str | None = None) -> str:
    return (code if not detail else f"{code}: {detail}")[:MAX_REASON]


def check_entry(entry: Entry, key: Ed25519PublicKey, gateway_id: str) -> Checked:
    """Verify one entry against the gateway's key; never raises.

    The batch's kid named the key; a signature whose header is unreadable or made by another
    key fails verification here.
    """
    try:
        signed = verify_event(entry.event, entry.sig, key)
    except CanonicalJsonError as exc:
        float_path = find_float(entry.event)
        if float_path is not None:
            return Checked(entry, None, _reason("float_in_payload", float_path))
        return Checked(entry, None, _reason("malformed", str(exc)))
    except JwsError as exc:
        return Checked(entry, None, _reason("bad_signature", str(exc)), security=True)
    except ValidationError as exc:
        return Checked(entry, None, _reason("malformed", describe_validation_error(exc.errors())))
    except ValueError as exc:
        return Checked(entry, None, _reason("malformed", str(exc)))
    if signed.event.gateway_id != gateway_id:
        return Checked(entry, None, _reason("gateway_mismatch"), security=True)
    return Checked(entry, signed)


def skewed(moments: list[datetime], now: datetime, past_s: int, future_s: int) -> bool:
    low, high = now - timedelta(seconds=past_s), now + timedelta(seconds=future_s)
    return any(not low <= moment <= high for moment in moments)


# --- storage ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    stored_at: str
    body: str


@dataclass
class BatchPlan:
    """What one batch will do, decided against the stored state before writing."""

    receipts: list[Receipt | None]
    rows: list[dict[str, Any]]
    row_index: list[int]
    security: list[SecurityEvent]


def _truncate_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _rejected(gateway_id: str, entry: Entry, reason: str, seq: int | None = None) -> Receipt:
    return Receipt(
        gateway_id=gateway_id,
        event_id=entry.claimed_event_id,
        seq=seq if seq is not None else entry.claimed_seq,
        status="rejected",
        reason=reason,
    )


def _existing(
    conn: Connection, gateway_id: str, checked: list[Checked]
) -> tuple[dict[str, Stored], dict[int, str]]:
    """Stored events sharing an event id or (gateway, seq) with the batch."""
    verified = [c.signed.event for c in checked if c.signed is not None]
    if not verified:
        return {}, {}
    by_id = {
        r.event_id: Stored(r.stored_at, r.body)
        for r in conn.execute(
            select(events.c.event_id, events.c.stored_at, events.c.body).where(
                one_of(conn, events.c.event_id, sorted({e.event_id for e in verified}))
            )
        )
    }
    by_seq = {
        int(r.seq): str(r.event_id)
        for r in conn.execute(
            select(events.c.seq, events.c.event_id).where(
                events.c.gateway_id == gateway_id,
                one_of(conn, events.c.seq, sorted({e.seq for e in verified})),
            )
        )
    }
    return by_id, by_seq


def plan_batch(
    ctx: CenterContext,
    gateway: Gateway,
    checked: list[Checked],
    by_id: dict[str, Stored],
    by_seq: dict[int, str],
    now: datetime,
    source_ip: str | None,
) -> BatchPlan:
    """Decide each event's fate (pure): duplicate, replay rejection, or a row to insert."""
    settings = ctx.settings
    stored_at = format_ts(now)
    highest = gateway.highest_seq
    plan = BatchPlan([], [], [], [])
    seen_ids = dict(by_id)
    seq_owner = dict(by_seq)

    def reject(c: Checked, reason: str, security: bool, seq: int | None = None) -> None:
        plan.receipts.append(_rejected(gateway.id, c.entry, reason, seq))
        if security:
            detail = f"event {c.entry.claimed_event_id} seq {seq or c.entry.claimed_seq}: {reason}"
            plan.security.append(
                SecurityEvent(now, reason.split(":", 1)[0], gateway.id, source_ip, detail)
            )

    for c in checked:
        if c.signed is None:
            reject(c, c.reason or "malformed", c.security)
            continue
        event, body = c.signed.event, c.signed.body.decode()
        known = seen_ids.get(event.event_id)
        if known is not None:
            if known.body == body:
                plan.receipts.append(
                    Receipt(
                        gateway_id=gateway.id,
                        event_id=event.event_id,
                        seq=event.seq,
                        status="duplicate",
                        stored_at=known.stored_at,
                    )
                )
            else:
                reject(c, "event_id_reused", True, event.seq)
            continue
        owner = seq_owner.get(event.seq)
        if owner is not None:
            reject(c, "seq_reused", True, event.seq)
            continue
        if event.seq <= highest - settings.gap_window:
            reject(c, _reason("seq_too_old", f"highest {highest}"), True, event.seq)
            continue
        occurred, recorded = parse_ts(event.occurred_at), parse_ts(event.recorded_at)
        plan.rows.append(
            {
                "event_id": event.event_id,
                "gateway_id": gateway.id,
                "seq": event.seq,
                "boot_id": event.boot_id,
                "class": event.event_class,
                "type": event.type,
                "priority": event.priority,
                "resident_ref": event.resident_ref,
                "device_id": event.device.id if event.device else None,
                "vkp_alert_code": event.vkp_alert_code,
                "occurred_at": occurred,
                "recorded_at": recorded,
                "received_at": now,
                "stored_at": stored_at,
                "clock_skew": skewed(
                    [occurred, recorded],
                    now,
                    settings.clock_skew_past_s,
                    settings.clock_skew_future_s,
                ),
                "body": body,
                "sig": c.signed.sig,
            }
        )
        plan.row_index.append(len(plan.receipts))
        plan.receipts.append(None)
        seen_ids[event.event_id] = Stored(stored_at, body)
        seq_owner[event.seq] = event.event_id
        highest = max(highest, event.seq)
    return plan


def _accepted(row: dict[str, Any]) -> Receipt:
    return Receipt(
        gateway_id=row["gateway_id"],
        event_id=row["event_id"],
        seq=row["seq"],
        status="accepted",
        stored_at=row["stored_at"],
    )


def _settle_conflict(conn: Connection, gateway_id: str, row: dict[str, Any]) -> Receipt:
    """A row a concurrent writer stored first: a duplicate if it is the same event."""
    stored = conn.execute(
        select(events.c.stored_at, events.c.body).where(events.c.event_id == row["event_id"])
    ).first()
    if stored is not None and stored.body == row["body"]:
        return Receipt(
            gateway_id=gateway_id,
            event_id=row["event_id"],
            seq=row["seq"],
            status="duplicate",
            stored_at=stored.stored_at,
        )
    reason = "event_id_reused" if stored is not None else "seq_reused"
    return Receipt(
        gateway_id=gateway_id,
        event_id=row["event_id"],
        seq=row["seq"],
        status="rejected",
        reason=reason,
    )


def store_batch(
    ctx: CenterContext, gateway_id: str, checked: list[Checked], source_ip: str | None
) -> list[Receipt]:
    """One transaction: lock the gateway, plan, insert, open alarms, update replay state."""
    now = _truncate_ms(ctx.now().astimezone(UTC))
    with ctx.engine.begin() as conn:
        gateway = load_gateway(conn, gateway_id=gateway_id, lock=True)
        if gateway is None or gateway.status != "active":
            raise ApiError(403, "gateway_revoked", "This gateway has been revoked by the centre.")
        by_id, by_seq = _existing(conn, gateway.id, checked)
        plan = plan_batch(ctx, gateway, checked, by_id, by_seq, now, source_ip)
        inserted = {
            str(event_id)
            for event_id in insert_many_ignoring_conflicts(conn, events, plan.rows, "event_id")
        }
        new_rows = [row for row in plan.rows if row["event_id"] in inserted]
        for index, row in zip(plan.row_index, plan.rows, strict=True):
            if row["event_id"] in inserted:
                plan.receipts[index] = _accepted(row)
            else:
                receipt = _settle_conflict(conn, gateway.id, row)
                plan.receipts[index] = receipt
                if receipt.status == "rejected":
                    plan.security.append(
                        SecurityEvent(
                            now,
                            str(receipt.reason),
                            gateway.id,
                            source_ip,
                            f"event {row['event_id']} seq {row['seq']}",
                        )
                    )
        opened = _open_event_alarms(conn, gateway, new_rows, checked, now)
        _clear_technical_alarms(conn, gateway, new_rows, opened, now)
        _upsert_devices(conn, gateway.id, checked, inserted, now)
        _advance_replay_state(conn, gateway, new_rows, now)
        record_security_events(conn, plan.security)
    receipts = [r for r in plan.receipts if r is not None]
    if len(receipts) != len(checked):
        raise RuntimeError("every event must get exactly one receipt")
    return receipts


def _device_event(row: dict[str, Any]) -> DeviceEvent:
    return DeviceEvent(row["gateway_id"], row["device_id"], row["type"], row["seq"])


def _open_event_alarms(
    conn: Connection,
    gateway: Gateway,
    rows: list[dict[str, Any]],
    checked: list[Checked],
    now: datetime,
) -> list[tuple[int, DeviceEvent]]:
    """Open an alarm per alarm-worthy row; return the technical ones (they may be cleared)."""
    alarm_rows = [r for r in rows if opens_alarm(r["class"], r["priority"])]
    if not alarm_rows:
        return []
    rooms = {
        c.signed.event.event_id: c.signed.event.device.room
        for c in checked
        if c.signed is not None and c.signed.event.device is not None
    }
    ids = open_alarms(
        conn,
        [
            NewAlarm(
                municipality_id=gateway.municipality_id,
                home_id=gateway.home_id,
                type=r["type"],
                priority=r["priority"],
                occurred_at=r["occurred_at"],
                event_id=r["event_id"],
                gateway_id=gateway.id,
                resident_ref=r["resident_ref"],
                vkp_alert_code=r["vkp_alert_code"],
                device_id=r["device_id"],
                room=rooms.get(r["event_id"]),
                clock_skew=r["clock_skew"],
            )
            for r in alarm_rows
        ],
        now,
        actor=f"gateway:{gateway.id}",
    )
    log.info("gateway %s: opened alarms %s", gateway.id, ids)
    resolve_test_alarms(conn, [(i, r["type"]) for i, r in zip(ids, alarm_rows, strict=True)], now)
    return [
        (alarm_id, _device_event(row))
        for alarm_id, row in zip(ids, alarm_rows, strict=True)
        if row["class"] == "technical"
    ]


def _clear_technical_alarms(
    conn: Connection,
    gateway: Gateway,
    rows: list[dict[str, Any]],
    opened: list[tuple[int, DeviceEvent]],
    now: datetime,
) -> None:
    """A device's ``technical.<x>_cleared`` resolves the alarm its ``technical.<x>`` opened."""
    cleared = [_device_event(r) for r in rows if cleared_type(r["class"], r["type"]) is not None]
    if not cleared and not opened:
        return
    resolved = resolve_cleared(conn, gateway.municipality_id, cleared, opened, now)
    if resolved:
        log.info("gateway %s: alarms %s cleared by their device", gateway.id, resolved)


def _upsert_devices(
    conn: Connection, gateway_id: str, checked: list[Checked], inserted: set[str], now: datetime
) -> None:
    """Remember each device an accepted event came from (latest profile and room win)."""
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    for c in checked:
        if c.signed is None or c.signed.event.event_id not in inserted:
            continue
        event = c.signed.event
        if event.device is None:
            continue
        previous = latest.get(event.device.id)
        if previous is None or previous[0] < event.seq:
            latest[event.device.id] = (
                event.seq,
                {
                    "gateway_id": gateway_id,
                    "device_id": event.device.id,
                    "profile": event.device.profile,
                    "room": event.device.room,
                    "first_seen_at": now,
                    "last_seen_at": now,
                },
            )
    if not latest:
        return
    stmt = upsert(
        conn,
        devices,
        ["gateway_id", "device_id"],
        lambda excluded: {
            "profile": excluded.profile,
            "room": excluded.room,
            "last_seen_at": excluded.last_seen_at,
        },
    )
    conn.execute(stmt, [row for _, row in sorted(latest.values(), key=lambda item: item[0])])


def _advance_replay_state(
    conn: Connection, gateway: Gateway, rows: list[dict[str, Any]], now: datetime
) -> None:
    if not rows:
        return
    top = max(rows, key=lambda r: r["seq"])
    values: dict[str, Any] = {
        "last_event_at": now,
        "highest_seq": case(
            (gateways.c.highest_seq < top["seq"], top["seq"]), else_=gateways.c.highest_seq
        ),
    }
    if top["seq"] > gateway.highest_seq:
        values["last_boot_id"] = top["boot_id"]
        if gateway.last_boot_id is not None and gateway.last_boot_id != top["boot_id"]:
            log.info(
                "gateway %s booted: boot id %s -> %s at seq %d",
                gateway.id,
                gateway.last_boot_id,
                top["boot_id"],
                top["seq"],
            )
    conn.execute(update(gateways).where(gateways.c.id == gateway.id).values(**values))


def _is_retryable(exc: DBAPIError) -> bool:
    """Deadlocks, serialisation failures and a busy SQLite: the batch can simply run again."""
    if isinstance(exc, OperationalError):
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01")


def ingest(ctx: CenterContext, raw: bytes, source_ip: str | None) -> list[Receipt]:
    """Handle one batch body end to end; raise ApiError for batch-level refusals."""
    try:
        entries = parse_batch(raw)
    except BatchError as exc:
        log.info("refused batch from %s: %s", source_ip, exc.reason)
        raise ApiError(exc.status, exc.reason, exc.message) from exc
    if not entries:
        return []
    try:
        kid = batch_kid(entries)
    except BatchError as exc:
        log.info("refused batch from %s: %s", source_ip, exc.reason)
        raise ApiError(exc.status, exc.reason, exc.message) from exc
    gateway = authenticate_gateway(ctx.engine, kid, ctx.now(), source_ip, "events")
    started = time.perf_counter()
    checked = [check_entry(e, gateway.public_key, gateway.id) for e in entries]
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            receipts = store_batch(ctx, gateway.id, checked, source_ip)
            break
        except IntegrityError:
            if attempt == STORE_ATTEMPTS:
                raise
            log.warning("gateway %s: batch hit a constraint race; retrying", gateway.id)
        except DBAPIError as exc:
            if attempt == STORE_ATTEMPTS or not _is_retryable(exc):
                raise
            log.warning("gateway %s: batch retry %d after %s", gateway.id, attempt, type(exc))
    counts: dict[str, int] = {}
    for r in receipts:
        counts[r.status] = counts.get(r.status, 0) + 1
    log.info(
        "gateway %s: %d events %s in %.1f ms",
        gateway.id,
        len(entries),
        counts,
        (time.perf_counter() - started) * 1000,
    )
    return receipts


router = APIRouter()


@router.post("/v1/events", response_class=JSONResponse)
def post_events(request: Request, body: Annotated[bytes, Depends(raw_body)]) -> JSONResponse:
    ctx = get_ctx(request)
    receipts = ingest(ctx, body, client_ip(request))
    return JSONResponse(sign_receipts(receipts, ctx.receipt_key, ctx.receipt_kid))
