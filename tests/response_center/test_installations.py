"""A home's installation at the centre: inventory from heartbeats, device commands, test alarms.

Every test runs on SQLite and on PostgreSQL (``center_db_url``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from response_center.db.schema import audit_log, device_commands
from tests.response_center.conftest import Center, enrol_gateway, login
from tests.response_center.helpers import FakeGateway, reason, send
from trygg.wire.canonical import canonical_json
from trygg.wire.clock import format_ts
from trygg.wire.jws import public_key_from_b64url, sign_detached
from trygg.wire.messages import (
    CommandResult,
    Heartbeat,
    Inventory,
    InventoryDevice,
    TestAlarmReport,
    verify_commands,
)

BUTTON = InventoryDevice(
    name="bedroom/button",
    ieee="0x00158d00045a1b2c",
    profile="aqara.WXKG11LM",
    room="bedroom",
    place="Storgata 1",
    allow_listed=True,
    status="trusted",
    state="online",
    battery=87,
    linkquality=96,
    last_seen="2026-11-22T11:59:00.000Z",
)
STRANGER = InventoryDevice(
    name="0x90fd9ffffe6494fc",
    ieee="0x90fd9ffffe6494fc",
    allow_listed=False,
    status="unknown",
    reason="no Trygg profile for IKEA LED1624G9",
    model="LED1624G9",
)


def inventory(*devices: InventoryDevice, digest: str = "digest-0001") -> Inventory:
    return Inventory(digest=digest, generated_at="2026-11-22T12:00:00.000Z", devices=list(devices))


async def beat(
    client: httpx.AsyncClient, center: Center, gateway: FakeGateway, **extras: Any
) -> dict[str, Any]:
    """One signed heartbeat a second after the last; the centre's JSON answer."""
    center.clock.advance(1)
    wire = Heartbeat(
        gateway_id=gateway.gateway_id,
        boot_id=gateway.boot_id,
        sent_at=format_ts(center.clock()),
        outbox_depth=0,
        alarms_queued=0,
        oldest_queued_age_s=0,
        **extras,
    ).to_wire()
    sig = sign_detached(canonical_json(wire), gateway.key, gateway.kid)
    answer = await client.post("/v1/heartbeat", json={"heartbeat": wire, "sig": sig})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def view(
    client: httpx.AsyncClient, user: str, home: str = "H-1", **params: str
) -> httpx.Response:
    return await client.get(
        f"/v1/homes/{home}/installation", headers=await login(client, user), params=params
    )


async def command(
    client: httpx.AsyncClient, user: str, home: str = "H-1", **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/homes/{home}/installation/commands", json=body, headers=await login(client, user)
    )


def audit_actions(center: Center) -> list[tuple[str, str, str]]:
    with center.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.outcome)
            .where(audit_log.c.action.like("installation.%"))
            .order_by(audit_log.c.id)
        )
        return [(r.actor, r.action, r.outcome) for r in rows]


async def test_the_installer_sees_the_devices_the_gateway_reported(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    answer = await beat(client, world, gateway, inventory=inventory(BUTTON, STRANGER))
    assert answer["inventory_digest"] == "digest-0001"
    assert "commands" not in answer  # nothing queued: the answer stays as before

    shown = await view(client, "ivar")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["home"] == {
        "ref": "H-1",
        "address": "Storgata 1, 0155 Oslo",
        "municipality": "0301",
    }
    (gw,) = body["gateways"]
    assert gw["id"] == gateway.gateway_id and gw["status"] == "active"
    assert gw["last_heartbeat_at"] == format_ts(world.clock())
    button, stranger = gw["devices"]
    assert {
        k: button[k] for k in ("name", "room", "place", "profile", "battery", "linkquality")
    } == {
        "name": "bedroom/button",
        "room": "bedroom",
        "place": "Storgata 1",
        "profile": "aqara.WXKG11LM",
        "battery": 87,
        "linkquality": 96,
    }
    assert button["last_seen_at"] == "2026-11-22T11:59:00.000Z" and button["state"] == "online"
    assert stranger["allow_listed"] is False and stranger["status"] == "unknown"
    assert gw["last_test_alarm"] is None and gw["commands"] == []

    # A later report replaces the earlier one as a whole.
    await beat(client, world, gateway, inventory=inventory(STRANGER, digest="digest-0002"))
    (gw,) = (await view(client, "ada")).json()["gateways"]
    assert [d["name"] for d in gw["devices"]] == [STRANGER.name]
    assert audit_actions(world) == [
        ("ivar", "installation.read", "ok"),
        ("ada", "installation.read", "ok"),
    ]


@pytest.mark.parametrize(
    ("user", "home", "status", "why"),
    [
        ("olga", "H-1", 403, "forbidden_role"),  # operators handle alarms, not installations
        ("nina", "H-1", 403, "forbidden_role"),
        ("ivar", "B-1", 404, "not_found"),  # Bergen's home, for an Oslo installer
        ("ivar", "H-404", 404, "not_found"),
    ],
)
async def test_roles_and_municipalities_are_checked(
    world: Center,
    client: httpx.AsyncClient,
    gateway: FakeGateway,
    user: str,
    home: str,
    status: int,
    why: str,
) -> None:
    shown = await view(client, user, home)
    assert (shown.status_code, reason(shown)) == (status, why)
    queued = await command(client, user, home, op="move", name="bedroom/button", room="kitchen")
    assert (queued.status_code, reason(queued)) == (status, why)
    with world.ctx.engine.connect() as conn:
        assert conn.execute(select(device_commands)).all() == []
    if status == 404:
        assert audit_actions(world) == [
            (user, "installation.read", "not_found"),
            (user, "installation.command", "not_found"),
        ]


async def test_a_device_command_reaches_the_gateway_signed_and_comes_back_applied(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    queued = await command(
        client, "ivar", op="add", name="kitchen/smoke", profile="heiman.HS1SA", room="kitchen",
        ieee="0x00124b0001aabbcc",
    )  # fmt: skip
    assert queued.status_code == 202, queued.text
    pending = queued.json()["command"]
    assert (pending["state"], pending["op"], pending["created_by"]) == ("pending", "add", "ivar")

    # A gateway that has never reported an inventory predates commands: it gets none.
    answer = await beat(client, world, gateway)
    assert "commands" not in answer and "inventory_digest" not in answer

    answer = await beat(client, world, gateway, inventory=inventory(BUTTON))
    key = public_key_from_b64url(gateway.center_public_key)
    (delivered,) = verify_commands(
        gateway.gateway_id, answer["commands"], answer["commands_sig"], key
    )
    assert (delivered.id, delivered.op, delivered.name, delivered.profile, delivered.room) == (
        pending["id"],
        "add",
        "kitchen/smoke",
        "heiman.HS1SA",
        "kitchen",
    )
    assert delivered.issued_by == "ivar"
    # Sent again until the gateway answers (an answer can be lost).
    again = await beat(client, world, gateway)
    assert [c["id"] for c in again["commands"]] == [pending["id"]]

    answer = await beat(
        client, world, gateway,
        command_results=[CommandResult(id=pending["id"], status="applied")],
    )  # fmt: skip
    assert "commands" not in answer
    (gw,) = (await view(client, "ivar")).json()["gateways"]
    (shown,) = gw["commands"]
    assert (shown["state"], shown["delivered_at"] is not None, shown["finished_at"]) == (
        "applied",
        True,
        format_ts(world.clock()),
    )


async def test_a_failed_command_shows_the_gateways_reason_and_results_for_others_are_ignored(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    other = await enrol_gateway(world, client, "4601", "B-1")
    await beat(client, world, gateway, inventory=inventory(BUTTON))
    queued = (await command(client, "ivar", op="rename", name="hall/door", to="entry/door")).json()
    answer = await beat(client, world, gateway)
    assert [c["id"] for c in answer["commands"]] == [queued["command"]["id"]]

    # Another gateway cannot settle this gateway's command.
    await beat(
        client,
        world,
        other,
        command_results=[CommandResult(id=queued["command"]["id"], status="applied")],
    )
    failed = CommandResult(
        id=queued["command"]["id"],
        status="failed",
        reason="no allow-listed device is called 'hall/door'",
    )
    await beat(client, world, gateway, command_results=[failed])
    (gw,) = (await view(client, "ivar")).json()["gateways"]
    assert gw["commands"][0]["state"] == "failed"
    assert gw["commands"][0]["reason"] == "no allow-listed device is called 'hall/door'"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            {"op": "add", "name": "kitchen/smoke", "room": "kitchen"},
            "an add command needs a profile",
        ),
        ({"op": "rename", "name": "hall/door"}, "a rename command needs 'to'"),
        ({"op": "move", "name": "hall/door"}, "a move command needs a room or a place"),
        ({"op": "move", "name": "bad name!", "room": "x"}, "name"),
        ({"op": "add", "name": "x", "profile": "Not A Profile"}, "profile"),
        ({"op": "move", "name": "x", "room": "y", "extra": 1}, "extra"),
        ({"op": "wipe", "name": "x"}, "op"),
    ],
)
async def test_malformed_commands_are_refused_and_nothing_is_queued(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway, body: dict[str, Any], why: str
) -> None:
    answer = await command(client, "ivar", **body)
    assert answer.status_code == 400 and reason(answer) == "malformed"
    assert why in answer.json()["detail"]["message"]
    with world.ctx.engine.connect() as conn:
        assert conn.execute(select(device_commands)).all() == []


async def test_a_home_without_a_gateway_has_nothing_to_send_commands_to(
    world: Center, client: httpx.AsyncClient
) -> None:
    answer = await command(client, "ivar", op="move", name="bedroom/button", room="kitchen")
    assert (answer.status_code, reason(answer)) == (409, "no_gateway")
    shown = (await view(client, "ivar")).json()
    assert shown["gateways"] == []


async def test_a_test_alarm_is_stored_as_a_test_resolved_at_once_with_its_round_trip(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    test = gateway.event("alarm.test", device=None, data={"test": True})
    (receipt,) = await send(client, gateway, test)
    assert receipt.status == "accepted"

    operator = await login(client, "olga")
    queue = await client.get("/v1/alarms", headers=operator)
    assert queue.json()["alarms"] == []  # no operator is paged
    done = (await client.get("/v1/alarms", params={"state": "resolved"}, headers=operator)).json()
    (alarm,) = done["alarms"]
    assert (alarm["type"], alarm["outcome"], alarm["resolved_by"]) == (
        "alarm.test",
        "test_alarm",
        "system",
    )

    (gw,) = (await view(client, "ivar")).json()["gateways"]
    assert gw["last_test_alarm"]["event_id"] == test.event.event_id
    assert gw["last_test_alarm"]["rtt_ms"] is None  # the gateway has not reported it yet

    report = TestAlarmReport(event_id=test.event.event_id, rtt_ms=143, receipt="accepted")
    await beat(client, world, gateway, test_alarm=report)
    (gw,) = (await view(client, "ivar")).json()["gateways"]
    shown = gw["last_test_alarm"]
    assert (shown["rtt_ms"], shown["receipt"], shown["state"], shown["outcome"]) == (
        143,
        "accepted",
        "resolved",
        "test_alarm",
    )

    # A real alarm right after is still an open alarm for the operator.
    await send(client, gateway, gateway.alarm())
    assert [
        a["type"] for a in (await client.get("/v1/alarms", headers=operator)).json()["alarms"]
    ] == ["alarm.button"]
