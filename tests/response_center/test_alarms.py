"""The alarm queue and state machine through the API: roles, tenants, history and audit."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from response_center.alarms import transition_refusal
from response_center.db.schema import alarm_transitions, audit_log
from tests.response_center.conftest import Center, enrol_gateway, login
from tests.response_center.helpers import FakeGateway, reason, send


async def open_alarm(client: httpx.AsyncClient, gateway: FakeGateway, **kwargs: object) -> int:
    await send(client, gateway, gateway.alarm(resident_ref="res-1", **kwargs))
    headers = await login(client, "ada")
    answer = await client.get("/v1/alarms", headers=headers)
    return int(answer.json()["alarms"][0]["id"])


def audit_rows(center: Center, action: str) -> list[tuple[str, int | None, int | None]]:
    with center.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.alarm_id, audit_log.c.resident_id)
            .where(audit_log.c.action == action)
            .order_by(audit_log.c.id)
        )
        return [(r.actor, r.alarm_id, r.resident_id) for r in rows]


async def test_queue_shows_most_urgent_then_newest_with_age_and_state(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(client, gateway, gateway.event("technical.smoke_sensor_silent", priority=2))
    world.clock.advance(10)
    await send(client, gateway, gateway.alarm(resident_ref="res-1"))
    world.clock.advance(20)
    await send(client, gateway, gateway.event("alarm.fall", priority=1, vkp_alert_code="4.1"))
    world.clock.advance(5)
    answer = await client.get("/v1/alarms", headers=await login(client, "olga"))
    assert answer.status_code == 200
    queue = answer.json()["alarms"]
    assert [(a["type"], a["age_s"], a["state"]) for a in queue] == [
        ("alarm.fall", 5, "new"),
        ("alarm.button", 25, "new"),
        ("technical.smoke_sensor_silent", 35, "new"),
    ]
    button = queue[1]
    assert button["resident"]["display_name"] == "Kari Nordmann"
    assert button["home"] == {"ref": "H-1", "address": "Storgata 1, 0155 Oslo"}
    assert button["municipality"] == "0301" and button["room"] == "hall"


async def test_operator_acknowledges_then_resolves_with_history(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    olga = await login(client, "olga")
    world.clock.advance(30)
    ack = await client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=olga)
    assert ack.status_code == 200, ack.text
    assert (ack.json()["state"], ack.json()["acknowledged_by"]) == ("acknowledged", "olga")
    world.clock.advance(300)
    done = await client.post(
        f"/v1/alarms/{alarm_id}/resolve",
        headers=olga,
        json={"outcome": "help_dispatched", "note": "home care visited"},
    )
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["outcome"]) == ("resolved", "help_dispatched")
    card = (await client.get(f"/v1/alarms/{alarm_id}", headers=olga)).json()
    assert [(h["from"], h["to"], h["by"]) for h in card["history"]] == [
        (None, "new", f"gateway:{gateway.gateway_id}"),
        ("new", "acknowledged", "olga"),
        ("acknowledged", "resolved", "olga"),
    ]
    assert card["acknowledged_at"] == "2026-11-22T12:00:30.000Z"
    assert card["resolved_at"] == "2026-11-22T12:05:30.000Z"
    assert audit_rows(world, "alarm.resolve") == [("olga", alarm_id, card["resident"]["id"])]
    open_queue = (await client.get("/v1/alarms", headers=olga)).json()["alarms"]
    assert open_queue == []


async def test_new_alarm_may_be_resolved_directly(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    answer = await client.post(
        f"/v1/alarms/{alarm_id}/resolve",
        headers=await login(client, "olga"),
        json={"outcome": "false_alarm"},
    )
    assert answer.status_code == 200
    assert answer.json()["acknowledged_at"] is None


async def test_invalid_transitions_are_409_with_a_reason(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    olga = await login(client, "olga")
    await client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=olga)
    twice = await client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=olga)
    assert twice.status_code == 409 and reason(twice) == "already_acknowledged"
    await client.post(
        f"/v1/alarms/{alarm_id}/resolve", headers=olga, json={"outcome": "handled_by_phone"}
    )
    after = await client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=olga)
    assert after.status_code == 409 and reason(after) == "already_resolved"
    again = await client.post(
        f"/v1/alarms/{alarm_id}/resolve", headers=olga, json={"outcome": "other"}
    )
    assert again.status_code == 409 and reason(again) == "already_resolved"


async def test_two_operators_racing_get_one_success(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    olga, ada = await login(client, "olga"), await login(client, "ada")
    answers = await asyncio.gather(
        client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=olga),
        client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=ada),
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    with world.ctx.engine.connect() as conn:
        steps = conn.execute(
            select(alarm_transitions.c.to_state).where(alarm_transitions.c.alarm_id == alarm_id)
        ).scalars()
        assert list(steps) == ["new", "acknowledged"]


def test_the_state_machine_table() -> None:
    assert transition_refusal("new", "acknowledged") is None
    assert transition_refusal("new", "resolved") is None
    assert transition_refusal("acknowledged", "resolved") is None
    assert transition_refusal("acknowledged", "acknowledged") == "already_acknowledged"
    assert transition_refusal("resolved", "acknowledged") == "already_resolved"
    assert transition_refusal("resolved", "new") == "already_resolved"


async def test_nurse_reads_but_cannot_act_installer_cannot_read(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    nina, ivar = await login(client, "nina"), await login(client, "ivar")
    assert (await client.get("/v1/alarms", headers=nina)).status_code == 200
    for headers in (nina, ivar):
        ack = await client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=headers)
        assert ack.status_code == 403 and reason(ack) == "forbidden_role"
    listing = await client.get("/v1/alarms", headers=ivar)
    assert listing.status_code == 403
    card = (await client.get(f"/v1/alarms/{alarm_id}", headers=nina)).json()
    assert card["state"] == "new"


async def test_another_municipality_sees_404_never_the_alarm(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    bjorn = await login(client, "bjorn")  # operator in Bergen only
    assert (await client.get("/v1/alarms", headers=bjorn)).json()["alarms"] == []
    for answer in (
        await client.get(f"/v1/alarms/{alarm_id}", headers=bjorn),
        await client.post(f"/v1/alarms/{alarm_id}/acknowledge", headers=bjorn),
        await client.get("/v1/alarms/999999", headers=bjorn),
    ):
        assert answer.status_code == 404
        assert reason(answer) == "not_found"
        assert "Kari" not in answer.text
    bergen = await enrol_gateway(world, client, "4601", "B-1")
    await send(client, bergen, bergen.alarm())
    mine = (await client.get("/v1/alarms", headers=bjorn)).json()["alarms"]
    assert [a["municipality"] for a in mine] == ["4601"]


async def test_every_read_is_audited_with_user_alarm_and_resident(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    nina = await login(client, "nina")
    await client.get("/v1/alarms", headers=nina)
    await client.get(f"/v1/alarms/{alarm_id}", headers=nina)
    reads = [row for row in audit_rows(world, "alarm.read") if row[0] == "nina"]
    assert len(reads) == 2
    assert all(alarm == alarm_id and resident is not None for _, alarm, resident in reads)
    with world.ctx.engine.connect() as conn:
        purposes = conn.execute(
            select(audit_log.c.purpose)
            .where(audit_log.c.actor == "nina", audit_log.c.action == "alarm.read")
            .order_by(audit_log.c.id)
        ).scalars()
        assert list(purposes) == ["alarm_queue", "alarm_card"]


async def test_bad_requests_to_the_alarm_api(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm_id = await open_alarm(client, gateway)
    olga = await login(client, "olga")
    bad_outcome = await client.post(
        f"/v1/alarms/{alarm_id}/resolve", headers=olga, json={"outcome": "gateway_back"}
    )
    assert bad_outcome.status_code == 400 and reason(bad_outcome) == "malformed"
    assert "outcome" in bad_outcome.json()["detail"]["message"]
    assert (await client.get("/v1/alarms?state=bogus", headers=olga)).status_code == 400
    assert (await client.get("/v1/alarms?limit=0", headers=olga)).status_code == 400
    assert (await client.get("/v1/alarms/not-a-number", headers=olga)).status_code == 400
    no_auth = await client.get("/v1/alarms")
    assert no_auth.status_code == 401 and reason(no_auth) == "unauthenticated"
