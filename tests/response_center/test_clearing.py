"""A device's ``technical.<x>_cleared`` resolves the alarm its ``technical.<x>`` opened.

On SQLite and PostgreSQL, through ``POST /v1/events`` with real signatures and receipts.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from response_center.alarms import cleared_type
from response_center.db.schema import alarm_transitions, alarms, events
from tests.response_center.conftest import Center, enrol_gateway, login
from tests.response_center.helpers import FakeGateway, send
from trygg.wire.envelope import DeviceRef, Event, SignedEvent, sign_event

SMOKE = DeviceRef(id="kitchen/smoke", profile="heiman.HS1SA", room="kitchen")
BUTTON = DeviceRef(id="bedroom/button", profile="aqara.WXKG11LM", room="bedroom")


def silent(gateway: FakeGateway, device: DeviceRef = SMOKE, **kw: Any) -> SignedEvent:
    return gateway.event(
        "technical.device_silent", priority=2, device=device, data={"condition": "silent"}, **kw
    )


def cleared(
    gateway: FakeGateway, device: DeviceRef = SMOKE, kind: str = "device_silent", **kw: Any
) -> SignedEvent:
    return gateway.event(f"technical.{kind}_cleared", device=device, data={}, **kw)


def deviceless(gateway: FakeGateway, type_: str, priority: int) -> SignedEvent:
    """An event without a device (the bridge), signed as the gateway signs it."""
    template = gateway.event(type_, priority=priority, data={})
    fields = template.event.model_dump(mode="json", by_alias=True)
    fields["device"] = None
    return sign_event(Event.model_validate(fields), gateway.key, gateway.kid)


def alarm_rows(center: Center) -> list[tuple[str, str | None, str, str | None, str | None]]:
    with center.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(
                alarms.c.type,
                alarms.c.device_id,
                alarms.c.state,
                alarms.c.outcome,
                alarms.c.resolved_by,
            ).order_by(alarms.c.id)
        )
        return [tuple(r) for r in rows]


async def test_a_cleared_event_resolves_the_open_alarm_of_its_device(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(client, gateway, silent(gateway))
    assert alarm_rows(world) == [("technical.device_silent", "kitchen/smoke", "new", None, None)]
    world.clock.advance(600)
    (receipt,) = await send(client, gateway, cleared(gateway))
    assert receipt.status == "accepted"
    assert alarm_rows(world) == [
        ("technical.device_silent", "kitchen/smoke", "resolved", "cleared_by_device", "system")
    ]
    with world.ctx.engine.connect() as conn:
        history = conn.execute(
            select(alarm_transitions.c.from_state, alarm_transitions.c.to_state).order_by(
                alarm_transitions.c.id
            )
        ).all()
        resolved_at = conn.execute(select(alarms.c.resolved_at)).scalar_one()
    assert [tuple(h) for h in history] == [(None, "new"), ("new", "resolved")]
    assert resolved_at == world.clock()


async def test_clearing_is_idempotent_and_an_acknowledged_alarm_clears_too(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(client, gateway, silent(gateway))
    olga = await login(client, "olga")
    (alarm,) = (await client.get("/v1/alarms", headers=olga)).json()["alarms"]
    ack = await client.post(f"/v1/alarms/{alarm['id']}/acknowledge", headers=olga)
    assert ack.status_code == 200
    clear = cleared(gateway)
    await send(client, gateway, clear)
    (again,) = await send(client, gateway, clear)  # the gateway resent it
    assert again.status == "duplicate"
    await send(client, gateway, cleared(gateway))  # a second, distinct clearing
    card = (await client.get(f"/v1/alarms/{alarm['id']}", headers=olga)).json()
    assert (card["state"], card["outcome"], card["resolved_by"]) == (
        "resolved",
        "cleared_by_device",
        "system",
    )
    assert [(h["from"], h["to"], h["by"]) for h in card["history"]] == [
        (None, "new", f"gateway:{gateway.gateway_id}"),
        ("new", "acknowledged", "olga"),
        ("acknowledged", "resolved", "system"),
    ]


async def test_never_another_device_type_or_gateway(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    neighbour = await enrol_gateway(world, client)  # same home and municipality
    await send(client, gateway, silent(gateway))
    await send(client, gateway, silent(gateway, BUTTON))
    await send(client, gateway, gateway.event("alarm.button", vkp_alert_code="3", device=BUTTON))
    await send(client, neighbour, cleared(neighbour))  # another gateway's smoke sensor
    await send(client, gateway, cleared(gateway, BUTTON, kind="tamper"))  # another condition
    await send(client, gateway, gateway.event("alarm.button_cleared", device=BUTTON, data={}))
    assert [state for _, _, state, _, _ in alarm_rows(world)] == ["new", "new", "new", "new"]
    await send(client, gateway, cleared(gateway, BUTTON))
    assert alarm_rows(world) == [
        ("technical.device_silent", "kitchen/smoke", "new", None, None),
        ("technical.device_silent", "bedroom/button", "resolved", "cleared_by_device", "system"),
        ("alarm.button", "bedroom/button", "new", None, None),
        ("alarm.button_cleared", "bedroom/button", "new", None, None),
    ]


async def test_a_cleared_event_with_nothing_open_is_just_stored(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    # A priority 3 condition opened no alarm; its clearing has nothing to resolve.
    await send(client, gateway, gateway.event("technical.battery_low", device=SMOKE, data={}))
    (receipt,) = await send(client, gateway, cleared(gateway, kind="battery_low"))
    assert receipt.status == "accepted"
    assert alarm_rows(world) == []
    with world.ctx.engine.connect() as conn:
        types = conn.execute(select(events.c.type).order_by(events.c.seq)).scalars().all()
    assert types == ["technical.battery_low", "technical.battery_low_cleared"]


async def test_a_clearing_that_overtook_its_raise_resolves_it_on_arrival(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    raise_ = silent(gateway)
    clear = cleared(gateway)
    await send(client, gateway, clear)  # the raise waited out a backoff; seq says it came first
    await send(client, gateway, raise_)
    assert alarm_rows(world) == [
        ("technical.device_silent", "kitchen/smoke", "resolved", "cleared_by_device", "system")
    ]


async def test_in_one_batch_each_clearing_resolves_only_what_came_before_it(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    first, clear, second = silent(gateway), cleared(gateway), silent(gateway)
    # The uplink sends ORDER BY priority, seq: both raises (2) before the clearing (3).
    await send(client, gateway, first, second, clear)
    assert [(state, outcome) for _, _, state, outcome, _ in alarm_rows(world)] == [
        ("resolved", "cleared_by_device"),
        ("new", None),
    ]


async def test_the_bridge_clears_its_own_deviceless_alarm_only(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(client, gateway, deviceless(gateway, "technical.bridge_offline", 2))
    await send(client, gateway, cleared(gateway, SMOKE, kind="bridge_offline"))  # with a device
    assert [state for _, _, state, _, _ in alarm_rows(world)] == ["new"]
    await send(client, gateway, deviceless(gateway, "technical.bridge_offline_cleared", 3))
    assert alarm_rows(world) == [
        ("technical.bridge_offline", None, "resolved", "cleared_by_device", "system")
    ]


def test_only_technical_types_clear() -> None:
    assert cleared_type("technical", "technical.device_silent_cleared") == "technical.device_silent"
    assert cleared_type("technical", "technical.battery_low") is None
    assert cleared_type("alarm", "alarm.smoke_cleared") is None
