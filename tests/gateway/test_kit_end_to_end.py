"""The sensor kit end to end: recorded Zigbee2MQTT payloads → real mosquitto → pipeline → outbox.

A simulated Zigbee2MQTT publishes the recorded ``bridge/devices`` dump and each kit device's
recorded message sequence (``tests/firmware_profiles/payloads``); the gateway's ingest runs
as in the daemon, with an injected clock, so check-in timeouts are reached by moving the
clock and calling the supervision check, never by waiting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.mqtt.zigbee2mqtt import parse_bridge_devices
from firmware_profiles.loader import load_profiles
from gateway.config import AllowedDevice, BrokerConfig
from gateway.ingest_state import MIGRATIONS
from gateway.inventory import read_inventory
from gateway.mqtt_ingest import run_mqtt_ingest
from gateway.outbox import Outbox, open_read_only
from gateway.pipeline import IngestPipeline
from tests.support.mosquitto import Mosquitto
from tests.support.wait import eventually

RECORDED = Path(__file__).parents[1] / "firmware_profiles" / "payloads"
DUMP = (RECORDED / "bridge_devices.json").read_bytes()
IEEE = {d.friendly_name: d.ieee for d in parse_bridge_devices(DUMP)}
KIT = {
    "bedroom/button": ("aqara.WXKG11LM", "aqara_wxkg11lm.json"),
    "hall/door": ("aqara.MCCGQ11LM", "aqara_mccgq11lm.json"),
    "living/motion": ("aqara.RTCGQ11LM", "aqara_rtcgq11lm.json"),
    "bathroom/leak": ("aqara.SJCGQ11LM", "aqara_sjcgq11lm.json"),
    "kitchen/smoke": ("heiman.HS1SA", "heiman_hs1sa.json"),
    "bedroom/bed": ("aqara.DJT11LM", "aqara_djt11lm.json"),
    "bedroom/radar": ("tuya.MIR-HE200-TY_fall", "tuya_mir_he200_ty_fall.json"),
    "kitchen/stove": ("tuya.TS011F_plug_1", "tuya_ts011f_plug_1.json"),
}
DEVICES = [
    AllowedDevice(
        friendly_name=name,
        ieee=IEEE[name],
        profile=profile,
        room=name.split("/")[0],
        resident_ref="res-1",
    )
    for name, (profile, _) in KIT.items()
]
START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
CLIENT_ID = "trygg-gw-kit"


def first_sequence(name: str) -> list[dict[str, Any]]:
    """The device's first recorded sequence, without broker-retained steps: a live publish
    reaches a subscriber with the retain flag clear, so it would not be the same message."""
    recorded = json.loads((RECORDED / KIT[name][1]).read_text(encoding="utf-8"))
    steps: list[dict[str, Any]] = recorded["sequences"][0]["steps"]
    return [step for step in steps if not step.get("retained")]


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class KitGateway:
    """The gateway's ingest as the daemon runs it, restartable over one database."""

    broker: Mosquitto
    path: Path
    clock: Clock = field(default_factory=Clock)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    outbox: Outbox | None = None
    pipeline: IngestPipeline | None = None
    task: asyncio.Task[None] | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> IngestPipeline:
        self.outbox = await Outbox.open(
            self.path, key=self.key, gateway_id="gw-kit", clock=self.clock, migrations=MIGRATIONS
        )
        pipeline = IngestPipeline(self.outbox, load_profiles(), DEVICES, self.clock)
        await pipeline.start()
        self.pipeline = pipeline
        subscribed = asyncio.Event()

        def on_subscribed() -> None:
            pipeline.link_up()
            subscribed.set()

        self.stop_event = asyncio.Event()
        config = BrokerConfig(host=self.broker.host, port=self.broker.port, client_id=CLIENT_ID)
        self.task = asyncio.create_task(
            run_mqtt_ingest(config, pipeline, self.stop_event, on_subscribed=on_subscribed)
        )
        await asyncio.wait_for(subscribed.wait(), 10)
        return pipeline

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
            self.task = None
        if self.outbox is not None:
            await self.outbox.close()
            self.outbox = None

    async def settled(self, received: int) -> None:
        """Wait until ``received`` messages arrived since start and all are committed."""
        pipeline = self.pipeline
        assert pipeline is not None

        async def count() -> int:
            return pipeline.counts["received"]

        await eventually(count, lambda n: n >= received, what=f"{received} messages")
        await pipeline.drain()

    async def supervise(self) -> None:
        assert self.pipeline is not None
        await self.pipeline.supervise()

    async def events(self) -> list[dict[str, Any]]:
        assert self.outbox is not None
        rows = await self.outbox.run(
            lambda db: db.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
        )
        return [json.loads(body) for (body,) in rows]


def device_of(event: dict[str, Any]) -> str | None:
    device = event.get("device")
    return None if device is None else str(device["id"])


@dataclass
class Z2m:
    """A simulated Zigbee2MQTT: publishes what the real one does, where it does."""

    client: aiomqtt.Client
    sent: int = 0

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        await self.client.publish(f"zigbee2mqtt/{topic}", payload, qos=1, retain=retain)
        self.sent += 1

    async def state(self, name: str, message: dict[str, Any]) -> None:
        await self.publish(name, json.dumps(message))


@pytest.fixture
async def z2m(mosquitto: Mosquitto) -> AsyncIterator[Z2m]:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="sim-z2m") as client:
        yield Z2m(client)


@pytest.fixture
async def gateway(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[KitGateway]:
    gw = KitGateway(mosquitto, tmp_path / "gateway.sqlite")
    yield gw
    await gw.stop()


EXPECTED = {
    # Each device's rule events in its first recorded sequence, then what supervision adds
    # from the same messages, then the one bad-payload report of its last step.
    "bedroom/button": [
        "alarm.button",
        "alarm.button",
        "alarm.button",
        "technical.battery_low",  # battery 18 %
        "alarm.button",
        "technical.bad_payload",
    ],
    "hall/door": ["activity.door_opened", "activity.door_closed", "technical.bad_payload"],
    "living/motion": ["activity.motion", "activity.motion", "activity.motion"],
    "bathroom/leak": ["alarm.water_leak", "technical.battery_low"],
    "kitchen/smoke": [
        "alarm.smoke",
        "alarm.smoke",
        "technical.tamper",  # the cover is opened
        "technical.bad_payload",
    ],
    "bedroom/bed": [
        "activity.bed_chair_movement",
        "activity.bed_chair_movement",
        "technical.sensor_displaced",
        "technical.bad_payload",
    ],
    "bedroom/radar": [
        "activity.fall_suspected",
        "alarm.fall",
        "activity.room_left",
        "activity.room_entered",
        "technical.fall_detection_off",
        "technical.bad_payload",
    ],
    "kitchen/stove": [
        "activity.stove_on",
        "activity.stove_off",
        "activity.stove_on",
        "activity.stove_off",
        "activity.stove_relay_off",
        "activity.stove_relay_on",
        "technical.bad_payload",
    ],
}


async def test_the_kit_end_to_end_discovery_events_and_technical_alarms(
    gateway: KitGateway, z2m: Z2m
) -> None:
    await z2m.publish("bridge/state", '{"state":"online"}', retain=True)
    await z2m.publish("bridge/devices", DUMP, retain=True)
    await gateway.start()
    for name in KIT:
        for step in first_sequence(name):
            await z2m.state(name, step["message"])
    await gateway.settled(z2m.sent)
    events = await gateway.events()

    # Discovery: the unsupported Tuya and the unknown weather sensor, once each.
    reports = [(e["type"], e["data"]["ieee"]) for e in events if device_of(e) is None]
    assert reports == [
        ("technical.unsupported_device", "0xa4c13899aabbccdd"),
        ("technical.unknown_device", "0x00158d0001e2f3a4"),
    ]
    for name, expected in EXPECTED.items():
        assert [e["type"] for e in events if device_of(e) == name] == expected, name
    alarms = [e for e in events if e["class"] == "alarm"]
    assert {(e["type"], e["priority"], e["vkp_alert_code"]) for e in alarms} == {
        ("alarm.button", 1, "3"),
        ("alarm.water_leak", 2, "4.17"),
        ("alarm.smoke", 1, "4.11"),
        ("alarm.fall", 1, "4.1"),
    }
    assert all(e["resident_ref"] == "res-1" for e in alarms)

    # The installer's view, read-only while the gateway runs.
    reader = open_read_only(gateway.path)
    try:
        inventory = {r.friendly_name: r for r in read_inventory(reader)}
    finally:
        reader.close()
    assert {n: inventory[n].status for n in KIT} == dict.fromkeys(KIT, "trusted")
    smoke = inventory["kitchen/smoke"]
    assert (smoke.profile, smoke.tamper) == ("heiman.HS1SA", True)
    assert smoke.conditions == frozenset({"tamper"})
    assert inventory["bedroom/button"].battery_low is True
    assert inventory["0x00158d0001e2f3a4"].status == "unknown"
    assert inventory["0xa4c13899aabbccdd"].status == "unsupported"

    # Two and a half check-in intervals later every battery device is silent, once; the
    # smoke sensor and the alarm button at priority 2 (an alarm at the centre).
    before = len(events)
    gateway.clock.advance(timedelta(hours=2, minutes=29))
    await gateway.supervise()
    assert len(await gateway.events()) == before
    gateway.clock.advance(timedelta(minutes=1))
    await gateway.supervise()
    await gateway.supervise()
    silent = (await gateway.events())[before:]
    assert {(device_of(e), e["type"], e["priority"]) for e in silent} == {
        ("bedroom/button", "technical.device_silent", 2),
        ("kitchen/smoke", "technical.device_silent", 2),
        ("hall/door", "technical.device_silent", 3),
        ("living/motion", "technical.device_silent", 3),
        ("bathroom/leak", "technical.device_silent", 3),
        ("bedroom/bed", "technical.device_silent", 3),
    }
    assert len(silent) == 6

    # Z2M says the radar is offline (1.x format), then online (2.x): raised once, cleared once.
    # The smoke sensor speaks again: silence cleared, and its tamper too.
    before = len(await gateway.events())
    await z2m.publish("bedroom/radar/availability", "offline", retain=True)
    await z2m.publish("bedroom/radar/availability", '{"state":"offline"}', retain=True)
    await z2m.publish("bedroom/radar/availability", '{"state":"online"}', retain=True)
    await z2m.state("kitchen/smoke", {"battery": 83, "battery_low": False, "tamper": False})
    await z2m.state("kitchen/smoke", {"battery": 83, "battery_low": False, "tamper": False})
    await gateway.settled(z2m.sent)
    later = (await gateway.events())[before:]
    assert [(device_of(e), e["type"], e["priority"]) for e in later] == [
        ("bedroom/radar", "technical.device_offline", 2),
        ("bedroom/radar", "technical.device_offline_cleared", 3),
        ("kitchen/smoke", "technical.device_silent_cleared", 3),
        ("kitchen/smoke", "technical.tamper_cleared", 3),
    ]


async def test_restarts_report_nothing_twice_and_give_a_fresh_check_in_window(
    gateway: KitGateway, z2m: Z2m
) -> None:
    await z2m.publish("bridge/state", '{"state":"online"}', retain=True)
    await z2m.publish("bridge/devices", DUMP, retain=True)
    await gateway.start()
    await z2m.state("kitchen/smoke", {"battery": 83, "battery_low": False, "smoke": False})
    await gateway.settled(z2m.sent)
    gateway.clock.advance(3 * HOUR)
    await gateway.supervise()
    first = await gateway.events()
    assert [e["type"] for e in first].count("technical.device_silent") == 6
    assert [e["type"] for e in first].count("technical.unknown_device") == 1

    # The gateway is down for a day. On return: the retained dump and bridge state again,
    # no second report, no second silent for devices already raised, and a fresh window
    # for the smoke sensor that spoke while we were away.
    await gateway.stop()
    await z2m.state("kitchen/smoke", {"battery": 82, "battery_low": False, "smoke": False})
    gateway.clock.advance(24 * HOUR)
    pipeline = await gateway.start()
    await gateway.settled(3)  # bridge/state, bridge/devices, the queued smoke report
    gateway.clock.advance(2 * HOUR)
    await gateway.supervise()
    after = (await gateway.events())[len(first) :]
    assert [(device_of(e), e["type"]) for e in after] == [
        ("kitchen/smoke", "technical.device_silent_cleared")
    ]
    gateway.clock.advance(HOUR)
    await gateway.supervise()
    newest = (await gateway.events())[len(first) + 1 :]
    assert [(device_of(e), e["type"], e["priority"]) for e in newest] == [
        ("kitchen/smoke", "technical.device_silent", 2)
    ]
    assert pipeline.counts["reports"] == 0


async def test_silence_is_held_back_while_the_bridge_is_offline(
    gateway: KitGateway, z2m: Z2m
) -> None:
    await z2m.publish("bridge/state", '{"state":"online"}', retain=True)
    await gateway.start()
    for name in KIT:
        await z2m.state(name, {"linkquality": 90})
    await gateway.settled(z2m.sent)
    gateway.clock.advance(HOUR)
    # Z2M stops (its last will publishes offline, retained; 1.x plain format here).
    await z2m.publish("bridge/state", "offline", retain=True)
    await gateway.settled(z2m.sent)
    gateway.clock.advance(30 * HOUR)
    await gateway.supervise()
    types = [(e["type"], e["priority"]) for e in await gateway.events()]
    assert types == [("technical.bridge_offline", 2)], "a hidden smoke sensor: an alarm"

    # The gateway restarts while Z2M is still away: still nothing.
    await gateway.stop()
    gateway.clock.advance(HOUR)
    await gateway.start()
    await gateway.settled(1)
    gateway.clock.advance(10 * HOUR)
    await gateway.supervise()
    assert len(await gateway.events()) == 1

    # Z2M returns; the devices get their check-in window again, from now.
    await z2m.publish("bridge/state", '{"state":"online"}', retain=True)
    await gateway.settled(2)
    gateway.clock.advance(timedelta(hours=2, minutes=29))
    await gateway.supervise()
    assert [e["type"] for e in await gateway.events()] == [
        "technical.bridge_offline",
        "technical.bridge_offline_cleared",
    ]
    gateway.clock.advance(timedelta(minutes=1))
    await gateway.supervise()
    assert [e["type"] for e in await gateway.events()][2:] == ["technical.device_silent"] * 6
