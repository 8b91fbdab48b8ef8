"""Gateway supervision: signed heartbeats in, ``technical.gateway_offline`` alarms out.

A gateway heartbeats every ``heartbeat_interval_s`` (the centre sets it at enrolment and in
every answer). When one has been silent for ``offline_after_intervals`` intervals, the
supervisor opens one offline alarm; the next heartbeat resolves it (outcome
``gateway_back``, by ``system``). Both edges are conditional UPDATEs of the gateway's
``offline`` flag, so any number of workers checking at once raise and clear exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from response_center import installations
from response_center.alarms import SYSTEM_ACTOR, NewAlarm, open_alarms, transition
from response_center.audit import SecurityEvent, record_security_event
from response_center.context import CenterContext, client_ip, get_ctx
from response_center.db.schema import alarms, gateways
from response_center.errors import ApiError, describe_validation_error
from response_center.gateways import authenticate_gateway
from response_center.settings import CenterSettings
from response_center.web import json_object
from trygg.wire.canonical import CanonicalJsonError, canonical_json
from trygg.wire.clock import Clock, format_ts, parse_ts
from trygg.wire.jws import JwsError, read_header, verify_detached
from trygg.wire.messages import Heartbeat, HeartbeatAnswer

log = logging.getLogger("trygg.center.supervision")

OFFLINE_TYPE = "technical.gateway_offline"
OFFLINE_PRIORITY = 2


class Supervisor:
    """Raises and clears gateway-offline alarms; ``check_once`` is the whole decision."""

    def __init__(self, engine: Engine, settings: CenterSettings, clock: Clock) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock

    def check_once(self, now: datetime | None = None) -> list[int]:
        """Open an offline alarm for each gateway newly silent too long; return their ids."""
        now = self.clock() if now is None else now
        cutoff = now - timedelta(seconds=self.settings.offline_after_s)
        last_sign = func.coalesce(gateways.c.last_heartbeat_at, gateways.c.enrolled_at)
        silent = and_(
            gateways.c.status == "active", gateways.c.offline.is_(False), last_sign < cutoff
        )
        with self.engine.connect() as conn:
            candidates = list(conn.execute(select(gateways.c.id).where(silent)))
        raised: list[int] = []
        for (gateway_id,) in candidates:
            with self.engine.begin() as conn:
                alarm_id = self._mark_offline(conn, gateway_id, silent, now)
            if alarm_id is not None:
                raised.append(alarm_id)
        return raised

    def _mark_offline(
        self, conn: Connection, gateway_id: str, silent: Any, now: datetime
    ) -> int | None:
        flipped = conn.execute(
            update(gateways)
            .where(gateways.c.id == gateway_id, silent)
            .values(offline=True, offline_since=now)
            .returning(
                gateways.c.municipality_id,
                gateways.c.home_id,
                gateways.c.last_heartbeat_at,
                gateways.c.enrolled_at,
            )
        ).first()
        if flipped is None:
            return None
        last_seen = flipped.last_heartbeat_at or flipped.enrolled_at
        (alarm_id,) = open_alarms(
            conn,
            [
                NewAlarm(
                    municipality_id=flipped.municipality_id,
                    home_id=flipped.home_id,
                    type=OFFLINE_TYPE,
                    priority=OFFLINE_PRIORITY,
                    occurred_at=last_seen,
                    gateway_id=gateway_id,
                )
            ],
            now,
            actor=SYSTEM_ACTOR,
        )
        log.warning("gateway %s offline since %s: alarm %d", gateway_id, last_seen, alarm_id)
        return alarm_id

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``supervision_period_s`` until ``stop`` is set; errors are logged."""
        period = self.settings.supervision_period_s
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.check_once)
            except Exception:
                log.exception("supervision check failed; retrying in %.0f s", period)
            try:
                await asyncio.wait_for(stop.wait(), timeout=period)
            except TimeoutError:
                continue


def clear_offline(conn: Connection, gateway_id: str, now: datetime) -> list[int]:
    """The gateway is back: drop the flag and resolve its open offline alarms."""
    flipped = conn.execute(
        update(gateways)
        .where(gateways.c.id == gateway_id, gateways.c.offline.is_(True))
        .values(offline=False, offline_since=None)
    ).rowcount
    if flipped != 1:
        return []
    open_ids = [
        int(r[0])
        for r in conn.execute(
            select(alarms.c.id).where(
                alarms.c.gateway_id == gateway_id,
                alarms.c.type == OFFLINE_TYPE,
                alarms.c.state != "resolved",
            )
        )
    ]
    for alarm_id in open_ids:
        transition(conn, alarm_id, "resolved", SYSTEM_ACTOR, now, None, "gateway_back")
    log.info("gateway %s back online; resolved alarms %s", gateway_id, open_ids)
    return open_ids


def _bad(status: int, reason: str, message: str) -> ApiError:
    return ApiError(status, reason, message)


def receive_heartbeat(ctx: CenterContext, body: dict[str, Any], ip: str | None) -> HeartbeatAnswer:
    """Verify a signed heartbeat, refuse replays, record it, and clear an offline alarm."""
    raw, sig = body.get("heartbeat"), body.get("sig")
    if not isinstance(raw, dict) or not isinstance(sig, str) or set(body) != {"heartbeat", "sig"}:
        raise _bad(400, "malformed", "The body must be {'heartbeat': object, 'sig': string}.")
    try:
        kid = str(read_header(sig)["kid"])
    except JwsError as exc:
        raise _bad(400, "malformed", f"The signature is not a usable JWS: {exc}") from exc
    now = ctx.now()
    gateway = authenticate_gateway(ctx.engine, kid, now, ip, "heartbeat")
    try:
        payload = canonical_json(raw)
    except CanonicalJsonError as exc:
        raise _bad(400, "malformed", str(exc)) from exc
    try:
        verify_detached(sig, payload, gateway.public_key)
    except JwsError as exc:
        with ctx.engine.begin() as conn:
            record_security_event(
                conn, SecurityEvent(now, "bad_signature", gateway.id, ip, "heartbeat")
            )
        raise _bad(401, "bad_signature", "The heartbeat's signature does not verify.") from exc
    try:
        beat = Heartbeat.model_validate(raw)
        sent_at = parse_ts(beat.sent_at)
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        detail = describe_validation_error(list(errors())) if callable(errors) else str(exc)
        raise _bad(400, "malformed", detail) from exc
    if beat.gateway_id != gateway.id:
        with ctx.engine.begin() as conn:
            record_security_event(
                conn, SecurityEvent(now, "gateway_mismatch", gateway.id, ip, "heartbeat")
            )
        raise _bad(403, "gateway_mismatch", "The heartbeat names another gateway.")
    if sent_at > now + timedelta(seconds=ctx.settings.clock_skew_future_s):
        raise _bad(400, "clock_skew", "The heartbeat's sent_at is in the future; fix the clock.")
    with ctx.engine.begin() as conn:
        fresh = conn.execute(
            update(gateways)
            .where(
                gateways.c.id == gateway.id,
                or_(
                    gateways.c.last_heartbeat_sent_at.is_(None),
                    gateways.c.last_heartbeat_sent_at < sent_at,
                ),
            )
            .values(last_heartbeat_at=now, last_heartbeat_sent_at=sent_at)
        ).rowcount
        extra = installations.Exchange()
        if fresh == 1:
            clear_offline(conn, gateway.id, now)
            extra = installations.exchange(ctx, conn, gateway, beat, now)
        else:
            record_security_event(
                conn,
                SecurityEvent(now, "heartbeat_replay", gateway.id, ip, f"sent_at {beat.sent_at}"),
            )
    if fresh != 1:
        raise _bad(409, "heartbeat_replay", "This heartbeat is not newer than the last one.")
    return HeartbeatAnswer(
        heartbeat_interval_s=ctx.settings.heartbeat_interval_s,
        server_time=format_ts(now),
        inventory_digest=extra.inventory_digest,
        commands=extra.commands,
        commands_sig=extra.commands_sig,
    )


router = APIRouter()


@router.post("/v1/heartbeat")
def post_heartbeat(
    request: Request, body: Annotated[dict[str, Any], Depends(json_object)]
) -> dict[str, Any]:
    ctx = get_ctx(request)
    answer = receive_heartbeat(ctx, body, client_ip(request))
    return answer.to_wire()  # without the installation's parts when empty (older gateways)
