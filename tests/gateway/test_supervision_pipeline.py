"""Discovery and supervision inside the ingest pipeline, on a real outbox (no broker needed).

Messages are handed to the pipeline as the MQTT client yields them; the clock is injected.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.mqtt.client import ReceivedMessage
from firmware_profiles.loader import load_profiles
from gateway.config import AllowedDevice, OutboxLimits
from gateway.ingest_state import MIGRATIONS
from gateway.inventory import read_inventory
from gateway.outbox import EventDraft, Outbox
from gateway.pipeline import IngestPipeline
from trygg.wire.receipt import Receipt

DUMP = (
    Path(__file__).parents[1] / "firmware_profiles" / "payloads" / "bridge_devices.json"
).read_bytes()
SMOKE = AllowedDevice(
    friendly_name="kitchen/smoke", ieee="0x0015bc001e0f1a2b", profile="heiman.HS1SA", room="kitchen"
)
BUTTON = AllowedDevice(
    friendly_name="bedroom/button", ieee="0x00158d00045a1b2c", profile="aqara.WXKG11LM"
)
START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Gateway:
    path: Path
    devices: list[AllowedDevice]
    limits: OutboxLimits = field(default_factory=OutboxLimits)
    clock: Clock = field(default_factory=Clock)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    mids: count[int] = field(default_factory=lambda: count(1))
    outbox: Outbox | None = None
    pipeline: IngestPipeline | None = None

    async def start(self) -> IngestPipeline:
        self.outbox = await Outbox.open(
            self.path,
            key=self.key,
            gateway_id="gw-test",
            clock=self.clock,
            limits=self.limits,
            migrations=MIGRATIONS,
        )
        self.pipeline = IngestPipeline(self.outbox, load_profiles(), self.devices, self.clock)
        await self.pipeline.start()
        return self.pipeline

    async def stop(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.drain()
        if self.outbox is not None:
            await self.outbox.close()
            self.outbox = None

    async def send(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        assert self.pipeline is not None
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        body = payload.encode() if isinstance(payload, str) else payload
        message = ReceivedMessage(f"zigbee2mqtt/{topic}", body, 1, False, next(self.mids), False)
        await self.pipeline.handle(message)

    async def types(self) -> list[str]:
        assert self.outbox is not None
        rows = await self.outbox.run(
            lambda db: db.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
        )
        return [json.loads(body)["type"] for (body,) in rows]

    def later(self, delta: timedelta) -> None:
        self.clock.now += delta


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(tmp_path / "gw.sqlite", [SMOKE, BUTTON])
    await gw.start()
    yield gw
    await gw.stop()


async def test_silence_waits_for_the_broker_link(gateway: Gateway) -> None:
    pipeline = gateway.pipeline
    assert pipeline is not None
    gateway.later(5 * HOUR)
    await pipeline.supervise()
    assert await gateway.types() == [], "nothing heard yet because nothing could be"
    await pipeline.link_up()
    gateway.later(timedelta(hours=2, minutes=30))
    await pipeline.supervise()
    assert await gateway.types() == ["technical.device_silent"] * 2


async def test_a_lost_broker_connection_holds_silence_until_messages_flow_again(
    gateway: Gateway,
) -> None:
    pipeline = gateway.pipeline
    assert pipeline is not None
    await gateway.send("kitchen/smoke", {"battery": 80})
    await gateway.send("bedroom/button", {"battery": 80})
    gateway.later(HOUR)
    await pipeline.resync()  # the connection ended
    gateway.later(10 * HOUR)
    await pipeline.supervise()
    assert await gateway.types() == []
    await gateway.send("bridge/state", '{"state":"online"}')  # first message: link is up
    gateway.later(timedelta(hours=1, minutes=29))
    await pipeline.supervise()
    assert await gateway.types() == []
    gateway.later(timedelta(minutes=1))
    await pipeline.supervise()
    assert await gateway.types() == ["technical.device_silent"] * 2


async def test_discovery_reports_once_and_the_strangers_messages_add_nothing(
    gateway: Gateway,
) -> None:
    await gateway.send("bridge/devices", DUMP)
    await gateway.send("bridge/devices", DUMP)
    reported = await gateway.types()
    # Six kit devices this home has not paired, the weather sensor, the unsupported Tuya.
    assert reported.count("technical.unknown_device") == 7
    assert reported.count("technical.unsupported_device") == 1
    assert len(reported) == 8
    await gateway.send("0x00158d0001e2f3a4", {"temperature": 21.5, "battery": 90})
    await gateway.send("living/motion", {"occupancy": True})
    assert await gateway.types() == reported
    assert gateway.pipeline is not None and gateway.pipeline.counts["unknown_device"] == 2
    await gateway.stop()
    await gateway.start()
    await gateway.send("bridge/devices", DUMP)
    assert await gateway.types() == reported


async def test_pairing_a_reported_device_makes_it_trusted_and_used(gateway: Gateway) -> None:
    pipeline = gateway.pipeline
    assert pipeline is not None and gateway.outbox is not None
    await gateway.send("bridge/devices", DUMP)
    leak = AllowedDevice(
        friendly_name="bathroom/leak", ieee="0x00158d0003a4b5c6", profile="aqara.SJCGQ11LM"
    )
    await pipeline.update_allowed([SMOKE, BUTTON, leak])
    await gateway.send("bathroom/leak", {"water_leak": True, "battery_low": False})
    types = await gateway.types()
    assert types[-1] == "alarm.water_leak"
    assert types.count("technical.unknown_device") == 7, "no second report for the leak sensor"
    inventory = {r.friendly_name: r for r in await gateway.outbox.run(read_inventory)}
    assert inventory["bathroom/leak"].status == "trusted"
    assert inventory["hall/door"].status == "unknown"
    await gateway.send("bedroom/button", {"battery": 95})
    inventory = {r.friendly_name: r for r in await gateway.outbox.run(read_inventory)}
    assert inventory["bedroom/button"].battery == 95

    await pipeline.update_allowed([SMOKE, leak])  # the button is unpaired: reported again
    assert (await gateway.types())[-1] == "technical.unknown_device"
    inventory = {r.friendly_name: r for r in await gateway.outbox.run(read_inventory)}
    assert inventory["bedroom/button"].status == "unknown"
    assert inventory["bedroom/button"].battery is None, "its health row went with it"


async def test_the_bridge_hides_every_device_so_its_offline_is_as_urgent_as_theirs(
    gateway: Gateway,
) -> None:
    assert gateway.outbox is not None
    await gateway.send("bridge/state", '{"state":"offline"}')
    await gateway.send("bridge/state", '{"state":"online"}')
    rows = await gateway.outbox.run(
        lambda db: db.execute("SELECT type, priority FROM outbox ORDER BY seq").fetchall()
    )
    assert rows == [("technical.bridge_offline", 2), ("technical.bridge_offline_cleared", 3)]


async def test_a_refused_technical_alarm_is_raised_again_when_there_is_room(
    tmp_path: Path,
) -> None:
    limits = OutboxLimits(max_rows=100, alarm_reserve_rows=10)
    gateway = Gateway(tmp_path / "gw.sqlite", [SMOKE], limits)
    pipeline = await gateway.start()
    outbox = gateway.outbox
    assert outbox is not None
    try:
        await pipeline.link_up()
        filler = EventDraft(event_class="technical", type="technical.filler", occurred_at=START)
        await outbox.commit([filler] * 90)
        gateway.later(3 * HOUR)
        await pipeline.supervise()  # the outbox keeps its alarm reserve: refused
        assert pipeline.counts["refused"] == 1
        assert "technical.device_silent" not in await gateway.types()
        await pipeline.supervise()  # still no room: refused again, not forgotten
        assert pipeline.counts["refused"] == 2

        # The centre takes the backlog; delivered rows make room for the raise.
        batch = await outbox.claim_batch(100)
        receipts = [
            Receipt(gateway_id="gw-test", event_id=r.event_id, seq=r.seq, status="accepted")
            for r in batch
        ]
        await outbox.settle(receipts)
        await pipeline.supervise()
        await pipeline.supervise()
        assert (await gateway.types()).count("technical.device_silent") == 1
    finally:
        await gateway.stop()
