"""Heartbeats and gateway-offline supervision, driven by an injected clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from response_center.db.schema import alarm_transitions, alarms, gateways
from response_center.supervision import Supervisor
from tests.response_center.conftest import Center, login
from tests.response_center.helpers import FakeGateway, reason, security_kinds
from tests.support.wait import eventually
from trygg.wire.canonical import canonical_json
from trygg.wire.clock import format_ts
from trygg.wire.jws import sign_detached
from trygg.wire.messages import Heartbeat, HeartbeatAnswer


def heartbeat(
    gateway: FakeGateway, key: Ed25519PrivateKey | None = None, **over: Any
) -> dict[str, Any]:
    beat = Heartbeat(
        gateway_id=gateway.gateway_id,
        boot_id=gateway.boot_id,
        sent_at=format_ts(gateway.clock()),
        outbox_depth=0,
        alarms_queued=0,
        oldest_queued_age_s=0,
    ).to_wire()
    beat.update(over)
    sig = sign_detached(canonical_json(beat), key or gateway.key, gateway.kid)
    return {"heartbeat": beat, "sig": sig}


def supervisor(center: Center) -> Supervisor:
    return Supervisor(center.ctx.engine, center.ctx.settings, center.clock)


def offline_alarms(center: Center) -> list[tuple[str, str | None, str | None]]:
    with center.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(alarms.c.state, alarms.c.outcome, alarms.c.resolved_by)
            .where(alarms.c.type == "technical.gateway_offline")
            .order_by(alarms.c.id)
        )
        return [(r.state, r.outcome, r.resolved_by) for r in rows]


async def test_heartbeat_is_answered_with_the_interval(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    answer = await client.post("/v1/heartbeat", json=heartbeat(gateway))
    assert answer.status_code == 200, answer.text
    body = HeartbeatAnswer.model_validate(answer.json())
    assert body.heartbeat_interval_s == 60
    assert body.server_time == format_ts(center.clock())
    with center.ctx.engine.connect() as conn:
        assert conn.execute(select(gateways.c.last_heartbeat_at)).scalar_one() == center.clock()


async def test_a_replayed_heartbeat_is_refused(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    beat = heartbeat(gateway)
    assert (await client.post("/v1/heartbeat", json=beat)).status_code == 200
    center.clock.advance(600)
    replay = await client.post("/v1/heartbeat", json=beat)
    assert replay.status_code == 409 and reason(replay) == "heartbeat_replay"
    assert security_kinds(center.ctx.engine) == ["heartbeat_replay"]
    with center.ctx.engine.connect() as conn:
        last = conn.execute(select(gateways.c.last_heartbeat_at)).scalar_one()
    assert last == center.clock() - timedelta(seconds=600)


async def test_forged_or_foreign_heartbeats_are_refused(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    forged = await client.post(
        "/v1/heartbeat", json=heartbeat(gateway, key=Ed25519PrivateKey.generate())
    )
    assert forged.status_code == 401 and reason(forged) == "bad_signature"
    other = await client.post("/v1/heartbeat", json=heartbeat(gateway, gateway_id="gw-other"))
    assert other.status_code == 403 and reason(other) == "gateway_mismatch"
    stranger = FakeGateway(center.clock, gateway_id=gateway.gateway_id)
    unknown = await client.post("/v1/heartbeat", json=heartbeat(stranger))
    assert unknown.status_code == 401 and reason(unknown) == "unknown_gateway"
    assert security_kinds(center.ctx.engine) == [
        "bad_signature",
        "gateway_mismatch",
        "unknown_gateway",
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"heartbeat": {}, "sig": 5},
        {"heartbeat": [], "sig": "x"},
        {"beat": {}, "sig": "a..b"},
    ],
)
async def test_malformed_heartbeats_are_400(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway, body: dict[str, Any]
) -> None:
    answer = await client.post("/v1/heartbeat", json=body)
    assert answer.status_code == 400 and reason(answer) == "malformed"


async def test_a_heartbeat_from_the_future_is_refused(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    center.clock.advance(3600)
    beat = heartbeat(gateway)
    center.clock.advance(-3600)
    answer = await client.post("/v1/heartbeat", json=beat)
    assert answer.status_code == 400 and reason(answer) == "clock_skew"


async def test_a_silent_gateway_raises_one_alarm_and_its_return_clears_it(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    watcher = supervisor(center)
    assert (await client.post("/v1/heartbeat", json=heartbeat(gateway))).status_code == 200
    center.clock.advance(179)  # three 60 s intervals not yet over
    assert watcher.check_once() == []
    center.clock.advance(2)
    raised = watcher.check_once()
    assert len(raised) == 1
    center.clock.advance(60)
    assert watcher.check_once() == []
    assert watcher.check_once() == []
    assert offline_alarms(center) == [("new", None, None)]
    with center.ctx.engine.connect() as conn:
        row = conn.execute(select(alarms)).one()
    assert (row.gateway_id, row.priority, row.home_id is not None) == (gateway.gateway_id, 2, True)
    assert row.age_at_arrival_s == 181
    assert (await client.post("/v1/heartbeat", json=heartbeat(gateway))).status_code == 200
    assert offline_alarms(center) == [("resolved", "gateway_back", "system")]
    assert (await client.post("/v1/heartbeat", json=heartbeat(gateway))).status_code == 409
    center.clock.advance(1)
    assert (await client.post("/v1/heartbeat", json=heartbeat(gateway))).status_code == 200
    assert offline_alarms(center) == [("resolved", "gateway_back", "system")]
    with center.ctx.engine.connect() as conn:
        steps = conn.execute(
            select(alarm_transitions.c.to_state, alarm_transitions.c.actor).where(
                alarm_transitions.c.alarm_id == raised[0]
            )
        ).all()
    assert [tuple(s) for s in steps] == [("new", "system"), ("resolved", "system")]


async def test_a_gateway_that_never_heartbeats_is_offline_after_enrolment(
    center: Center, gateway: FakeGateway
) -> None:
    watcher = supervisor(center)
    center.clock.advance(181)
    assert len(watcher.check_once()) == 1
    assert len(offline_alarms(center)) == 1


async def test_two_workers_checking_at_once_raise_one_alarm(
    center: Center, gateway: FakeGateway
) -> None:
    center.clock.advance(181)
    first, second = supervisor(center), supervisor(center)
    assert len(first.check_once()) + len(second.check_once()) == 1
    assert len(offline_alarms(center)) == 1


async def test_after_an_operator_resolved_it_a_new_outage_raises_again(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    watcher = supervisor(world)
    world.clock.advance(181)
    (alarm_id,) = watcher.check_once()
    olga = await login(client, "olga")
    resolved = await client.post(
        f"/v1/alarms/{alarm_id}/resolve", headers=olga, json={"outcome": "technical_fixed"}
    )
    assert resolved.status_code == 200
    assert (await client.post("/v1/heartbeat", json=heartbeat(gateway))).status_code == 200
    world.clock.advance(181)
    assert len(watcher.check_once()) == 1
    assert [state for state, _, _ in offline_alarms(world)] == ["resolved", "new"]


@pytest.mark.center_settings(supervisor_enabled=True, supervision_period_s=0.05)
async def test_the_lifespan_runs_the_supervisor(center: Center, gateway: FakeGateway) -> None:
    center.clock.advance(181)

    async def raised() -> int:
        return len(offline_alarms(center))

    assert await eventually(raised, lambda n: n == 1, what="offline alarm") == 1
