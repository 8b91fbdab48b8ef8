"""POST /v1/events: verified, exactly-once storage with signed receipts (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from response_center import admin
from response_center.context import CenterContext
from response_center.db.engine import make_engine
from response_center.db.schema import alarms, devices, events, gateways
from response_center.ingest import ingest
from tests.response_center.conftest import Center
from tests.response_center.helpers import (
    FakeGateway,
    alarm_count,
    batch,
    count,
    reason,
    security_kinds,
    send,
    stored_events,
)
from trygg.wire.canonical import canonical_json
from trygg.wire.clock import format_ts
from trygg.wire.jws import sign_detached
from trygg.wire.messages import MAX_BATCH_EVENTS
from trygg.wire.receipt import Receipt


async def test_accepted_event_gets_a_receipt_the_gateway_can_verify(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    signed = gateway.event()
    (receipt,) = await send(client, gateway, signed)
    assert receipt == Receipt(
        gateway_id=gateway.gateway_id,
        event_id=signed.event.event_id,
        seq=1,
        status="accepted",
        stored_at=format_ts(center.clock()),
    )
    assert stored_events(center.ctx.engine) == [(signed.event.event_id, 1, signed.body.decode())]
    with center.ctx.engine.connect() as conn:
        device = conn.execute(select(devices)).one()
        gw = conn.execute(select(gateways)).one()
    assert (device.device_id, device.room) == ("hall/button", "hall")
    assert (gw.highest_seq, gw.last_boot_id) == (1, "boot-1")


async def test_receipts_come_back_one_per_event_in_order(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    sent = [gateway.event() for _ in range(20)]
    receipts = await send(client, gateway, *sent)
    assert [r.event_id for r in receipts] == [s.event.event_id for s in sent]
    assert {r.status for r in receipts} == {"accepted"}
    assert len(stored_events(center.ctx.engine)) == 20


async def test_a_resent_event_is_a_duplicate_with_the_first_stored_at(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    signed = gateway.alarm()
    (first,) = await send(client, gateway, signed)
    center.clock.advance(3600)
    (again,) = await send(client, gateway, signed)
    assert again.status == "duplicate"
    assert again.stored_at == first.stored_at
    assert again.settles
    assert len(stored_events(center.ctx.engine)) == 1
    assert alarm_count(center.ctx.engine) == 1


async def test_the_same_event_twice_in_one_batch_is_stored_once(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    signed = gateway.alarm()
    first, second = await send(client, gateway, signed, signed)
    assert (first.status, second.status) == ("accepted", "duplicate")
    assert second.stored_at == first.stored_at
    assert len(stored_events(center.ctx.engine)) == 1
    assert alarm_count(center.ctx.engine) == 1


async def test_a_forged_signature_is_rejected_and_logged(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    kept = gateway.event()
    await send(client, gateway, kept)
    before = stored_events(center.ctx.engine)
    forged = gateway.alarm()
    impostor = Ed25519PrivateKey.generate()
    wire = {
        "event": forged.event.to_wire(),
        "sig": sign_detached(forged.body, impostor, gateway.kid),
    }
    answer = await client.post("/v1/events", json={"events": [wire]})
    (receipt,) = gateway.receipts(answer)
    assert receipt.status == "rejected"
    assert receipt.reason is not None and receipt.reason.startswith("bad_signature")
    assert not receipt.settles
    assert stored_events(center.ctx.engine) == before
    assert alarm_count(center.ctx.engine) == 0
    assert security_kinds(center.ctx.engine) == ["bad_signature"]


async def test_a_tampered_field_breaks_the_signature(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    signed = gateway.alarm()
    wire = signed.to_wire()
    wire["event"]["priority"] = 9  # an attacker trying to bury an alarm
    (receipt,) = gateway.receipts(await client.post("/v1/events", json={"events": [wire]}))
    assert receipt.status == "rejected" and str(receipt.reason).startswith("bad_signature")
    assert stored_events(center.ctx.engine) == []
    assert security_kinds(center.ctx.engine) == ["bad_signature"]


async def test_a_reused_seq_is_rejected_as_replay(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    original = gateway.event(seq=5)
    await send(client, gateway, original)
    before = stored_events(center.ctx.engine)
    replay = gateway.alarm(seq=5)
    (receipt,) = await send(client, gateway, replay)
    assert (receipt.status, receipt.reason, receipt.seq) == ("rejected", "seq_reused", 5)
    assert stored_events(center.ctx.engine) == before
    assert alarm_count(center.ctx.engine) == 0
    assert security_kinds(center.ctx.engine) == ["seq_reused"]


@pytest.mark.center_settings(gap_window=10)
async def test_old_seqs_are_accepted_within_the_gap_window_only(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(client, gateway, gateway.event(seq=100))
    inside, outside = gateway.event(seq=91), gateway.alarm(seq=90)
    late, old = await send(client, gateway, inside, outside)
    assert late.status == "accepted"  # store-and-forward reordering after an outage
    assert old.status == "rejected" and str(old.reason).startswith("seq_too_old")
    assert [seq for _, seq, _ in stored_events(center.ctx.engine)] == [100, 91]
    assert security_kinds(center.ctx.engine) == ["seq_too_old"]
    with center.ctx.engine.connect() as conn:
        assert conn.execute(select(gateways.c.highest_seq)).scalar_one() == 100


async def test_floats_are_rejected_with_their_path(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    wire = gateway.event().to_wire()
    wire["event"]["data"] = {"temperature": 36.6}
    (receipt,) = gateway.receipts(await client.post("/v1/events", json={"events": [wire]}))
    assert receipt.status == "rejected"
    assert receipt.reason == "float_in_payload: $.data.temperature"
    assert stored_events(center.ctx.engine) == []


async def test_a_signed_but_invalid_event_names_the_bad_field(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    raw = gateway.event(seq=7).event.to_wire()
    raw["priority"] = 12
    wire = {"event": raw, "sig": sign_detached(canonical_json(raw), gateway.key, gateway.kid)}
    (receipt,) = gateway.receipts(await client.post("/v1/events", json={"events": [wire]}))
    assert receipt.status == "rejected"
    assert str(receipt.reason).startswith("malformed: priority")
    assert receipt.seq == 7
    assert stored_events(center.ctx.engine) == []
    assert security_kinds(center.ctx.engine) == []


async def test_an_event_naming_another_gateway_is_rejected(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    signed = gateway.alarm(gateway_id="gw-someoneelse")
    (receipt,) = await send(client, gateway, signed)
    assert (receipt.status, receipt.reason) == ("rejected", "gateway_mismatch")
    assert stored_events(center.ctx.engine) == []
    assert security_kinds(center.ctx.engine) == ["gateway_mismatch"]


async def test_one_bad_event_does_not_spoil_the_batch(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    good1, bad, good2 = gateway.event(), gateway.event(), gateway.alarm()
    wire = batch(good1, bad, good2)
    wire["events"][1]["event"]["type"] = "measurement.weight"
    receipts = gateway.receipts(await client.post("/v1/events", json=wire))
    assert [r.status for r in receipts] == ["accepted", "rejected", "accepted"]
    assert alarm_count(center.ctx.engine) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json at all", "malformed"),
        (b"[1, 2, 3]", "malformed"),
        (b'{"events": {"a": 1}}', "malformed"),
        (b'{"events": [1, 2]}', "malformed"),
        (b'{"events": [{"event": "x", "sig": "y"}]}', "malformed"),
        (b'{"events": [], "events": []}', "malformed"),
        (b'{"events": [], "extra": 1}', "malformed"),
        (b"", "malformed"),
    ],
)
async def test_malformed_bodies_are_400_and_change_nothing(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway, body: bytes, expected: str
) -> None:
    await send(client, gateway, gateway.event())
    before = stored_events(center.ctx.engine)
    answer = await client.post(
        "/v1/events", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert reason(answer) == expected
    assert answer.json()["detail"]["message"]
    assert stored_events(center.ctx.engine) == before


async def test_too_many_events_is_413(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    one = gateway.event().to_wire()
    answer = await client.post("/v1/events", json={"events": [one] * (MAX_BATCH_EVENTS + 100)})
    assert answer.status_code == 413
    assert reason(answer) == "too_many_events"
    assert stored_events(center.ctx.engine) == []


async def test_a_5_mb_body_is_413_before_it_is_parsed(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    blob = b'{"events": [' + b" " * (5 * 1024 * 1024) + b"]}"
    answer = await client.post("/v1/events", content=blob)
    assert answer.status_code == 413
    assert reason(answer) == "body_too_large"

    async def chunks() -> Any:  # no Content-Length: the limit must hold while streaming
        for _ in range(5):
            yield b" " * (1024 * 1024)

    streamed = await client.post("/v1/events", content=chunks())
    assert streamed.status_code == 413
    assert stored_events(center.ctx.engine) == []


async def test_an_unknown_key_is_401_and_a_security_event(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    stranger = FakeGateway(center.clock, gateway_id=gateway.gateway_id)
    answer = await client.post("/v1/events", json=batch(stranger.alarm()))
    assert answer.status_code == 401
    assert reason(answer) == "unknown_gateway"
    assert stored_events(center.ctx.engine) == []
    assert security_kinds(center.ctx.engine) == ["unknown_gateway"]


async def test_a_revoked_gateway_is_403(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(client, gateway, gateway.event())
    with center.ctx.engine.begin() as conn:
        admin.revoke_gateway(conn, gateway.gateway_id, "ada", center.clock)
    answer = await client.post("/v1/events", json=batch(gateway.alarm()))
    assert answer.status_code == 403
    assert reason(answer) == "gateway_revoked"
    assert len(stored_events(center.ctx.engine)) == 1
    assert security_kinds(center.ctx.engine) == ["revoked_gateway"]


async def test_a_batch_signed_by_two_keys_is_refused(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    other = FakeGateway(center.clock, gateway_id=gateway.gateway_id)
    answer = await client.post("/v1/events", json=batch(gateway.event(), other.event()))
    assert answer.status_code == 400
    assert reason(answer) == "mixed_kid"
    assert stored_events(center.ctx.engine) == []


async def test_an_alarm_opens_exactly_one_alarm(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    alarm = gateway.alarm(resident_ref="res-1")
    await send(client, gateway, alarm, gateway.event(), gateway.event("technical.battery_low"))
    await send(client, gateway, alarm)
    with center.ctx.engine.connect() as conn:
        rows = conn.execute(select(alarms)).all()
    assert len(rows) == 1
    (row,) = rows
    assert (row.event_id, row.type, row.state, row.priority) == (
        alarm.event.event_id,
        "alarm.button",
        "new",
        1,
    )
    assert row.resident_id is not None and row.room == "hall" and row.vkp_alert_code == "3"


async def test_urgent_technical_events_open_alarms_too(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(
        client,
        gateway,
        gateway.event("technical.smoke_sensor_silent", priority=2),
        gateway.event("technical.battery_low", priority=3),
    )
    with center.ctx.engine.connect() as conn:
        types = conn.execute(select(alarms.c.type)).scalars().all()
    assert types == ["technical.smoke_sensor_silent"]


async def test_a_stale_alarm_is_kept_and_flagged_with_its_age(
    center: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    two_days_ago = center.clock() - timedelta(days=2)
    (receipt,) = await send(client, gateway, gateway.alarm(occurred_at=two_days_ago))
    assert receipt.status == "accepted"
    with center.ctx.engine.connect() as conn:
        alarm = conn.execute(select(alarms)).one()
        event = conn.execute(select(events)).one()
    assert alarm.clock_skew and event.clock_skew
    assert alarm.age_at_arrival_s == 2 * 24 * 3600


async def test_a_boot_change_is_logged(
    center: Center,
    client: httpx.AsyncClient,
    gateway: FakeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await send(client, gateway, gateway.event())
    gateway.boot_id = "boot-2"
    with caplog.at_level(logging.INFO, logger="trygg.center.ingest"):
        await send(client, gateway, gateway.event())
    assert any("boot-1 -> boot-2" in r.getMessage() for r in caplog.records)
    with center.ctx.engine.connect() as conn:
        assert conn.execute(select(gateways.c.last_boot_id)).scalar_one() == "boot-2"


async def test_logs_never_carry_event_data(
    center: Center,
    client: httpx.AsyncClient,
    gateway: FakeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "systolic-181-SECRET"
    forged = gateway.event(data={"note": secret})
    wire = forged.to_wire()
    wire["event"]["data"]["note"] = secret + "x"
    with caplog.at_level(logging.DEBUG):
        await send(client, gateway, forged)
        await client.post("/v1/events", json={"events": [wire]})
    assert secret not in caplog.text


async def test_concurrent_identical_batches_store_each_event_once(
    center: Center, gateway: FakeGateway
) -> None:
    """Two workers (own engines), the same batch at the same moment: one store, one alarm each."""
    sent = [gateway.alarm() if i % 5 == 0 else gateway.event() for i in range(50)]
    body = json.dumps(batch(*sent)).encode()
    workers = [
        CenterContext(
            center.ctx.settings,
            make_engine(center.ctx.settings.database_url),
            center.clock,
            center.ctx.receipt_key,
        )
        for _ in range(2)
    ]
    start = Barrier(len(workers) * 2)

    def post(ctx: CenterContext) -> list[Receipt]:
        start.wait()
        return ingest(ctx, body, "127.0.0.1")

    def run_all() -> list[list[Receipt]]:
        with ThreadPoolExecutor(len(workers) * 2) as pool:
            return list(pool.map(post, workers * 2))

    try:
        results = await asyncio.to_thread(run_all)
    finally:
        for worker in workers:
            worker.engine.dispose()
    for i in range(len(sent)):
        statuses = sorted(r[i].status for r in results)
        assert statuses == ["accepted", "duplicate", "duplicate", "duplicate"], statuses
        assert len({r[i].stored_at for r in results}) == 1
    engine = center.ctx.engine
    assert len(stored_events(engine)) == 50
    assert alarm_count(engine) == 10
    assert count(engine, devices) == 1
