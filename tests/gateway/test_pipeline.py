"""The ingest pipeline with a real outbox on disk, fed messages as the MQTT client yields them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
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
from gateway.outbox import EventDraft, Outbox
from gateway.pipeline import IngestPipeline
from trygg.wire.envelope import SignedEvent

BUTTON = AllowedDevice(
    friendly_name="bedroom/button",
    ieee="0x00158d00045a1b2c",
    profile="aqara.WXKG11LM",
    room="bedroom",
    resident_ref="res-1",
)
DOOR = AllowedDevice(
    friendly_name="hall/door", ieee="0x00158d000451f2a7", profile="aqara.MCCGQ11LM", room="hall"
)
PRESS = b'{"action":"single","battery":100,"voltage":3042,"linkquality":81}'
OPEN = b'{"contact":false,"battery":100,"voltage":3005,"linkquality":120}'
CLOSED = b'{"contact":true,"battery":100,"voltage":3005,"linkquality":117}'


@dataclass
class FakeClock:
    now: datetime = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Home:
    """One gateway's database, and a pipeline over it that can be 'restarted'."""

    path: Path
    key: Ed25519PrivateKey
    clock: FakeClock
    devices: Sequence[AllowedDevice]
    limits: OutboxLimits = field(default_factory=OutboxLimits)
    alarms: list[SignedEvent] = field(default_factory=list)
    outbox: Outbox | None = None
    pipeline: IngestPipeline | None = None
    mids: count[int] = field(default_factory=lambda: count(1))

    async def start(self, outbox_class: type[Outbox] = Outbox) -> IngestPipeline:
        self.outbox = await outbox_class.open(
            self.path,
            key=self.key,
            gateway_id="gw-test",
            clock=self.clock,
            limits=self.limits,
            migrations=MIGRATIONS,
        )
        self.pipeline = IngestPipeline(
            self.outbox, load_profiles(), self.devices, self.clock, self.alarms.append
        )
        await self.pipeline.start()
        return self.pipeline

    async def stop(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.drain()
        if self.outbox is not None:
            await self.outbox.close()

    async def restart(self) -> IngestPipeline:
        await self.stop()
        return await self.start()

    def message(
        self,
        topic: str,
        payload: bytes | str,
        *,
        mid: int | None = None,
        dup: bool = False,
        retain: bool = False,
    ) -> ReceivedMessage:
        body = payload.encode() if isinstance(payload, str) else payload
        return ReceivedMessage(f"zigbee2mqtt/{topic}", body, 1, retain, mid or next(self.mids), dup)

    async def send(self, topic: str, payload: bytes | str, **kw: Any) -> None:
        assert self.pipeline is not None
        await self.pipeline.handle(self.message(topic, payload, **kw))

    async def events(self) -> list[dict[str, Any]]:
        assert self.outbox is not None
        rows = await self.outbox.run(
            lambda db: db.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
        )
        return [json.loads(body) for (body,) in rows]

    async def types(self) -> list[str]:
        return [event["type"] for event in await self.events()]


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    home = Home(tmp_path / "gw.sqlite", Ed25519PrivateKey.generate(), FakeClock(), [BUTTON, DOOR])
    await home.start()
    yield home
    await home.stop()


async def test_a_button_press_is_one_signed_alarm(home: Home) -> None:
    await home.send("bedroom/button", PRESS)
    (event,) = await home.events()
    assert event["class"] == "alarm"
    assert event["type"] == "alarm.button"
    assert event["priority"] == 1
    assert event["vkp_alert_code"] == "3"
    assert event["resident_ref"] == "res-1"
    assert event["device"] == {
        "id": "bedroom/button",
        "profile": "aqara.WXKG11LM",
        "room": "bedroom",
    }
    assert event["data"] == {"action": "single", "battery": 100, "voltage": 3042, "linkquality": 81}
    assert event["occurred_at"] == "2026-11-22T08:00:00.000Z"
    assert [a.event.event_id for a in home.alarms] == [event["event_id"]]


async def test_every_genuine_press_raises_even_with_identical_payloads(home: Home) -> None:
    for _ in range(3):
        await home.send("bedroom/button", PRESS)
    await home.send("bedroom/button", '{"action":"","battery":100}')
    await home.send("bedroom/button", '{"action":"release","battery":100}')
    assert await home.types() == ["alarm.button"] * 3


async def test_door_transitions_and_no_spurious_event_after_restart(home: Home) -> None:
    await home.send("hall/door", CLOSED)  # first report: learnt, not raised
    await home.send("hall/door", OPEN)
    await home.send("hall/door", '{"battery":99}')
    await home.send("hall/door", OPEN)
    await home.send("hall/door", CLOSED)
    assert await home.types() == ["activity.door_opened", "activity.door_closed"]
    (opened, closed) = await home.events()
    assert (opened["vkp_alert_code"], closed["vkp_alert_code"]) == ("4.15", "4.16")
    assert opened["class"] == "activity" and opened["data"]["contact"] is False

    await home.restart()
    await home.send("hall/door", CLOSED, retain=True)  # the broker's retained copy
    assert len(await home.events()) == 2
    await home.send("hall/door", OPEN)
    assert (await home.types())[-1] == "activity.door_opened"


async def test_a_door_that_changed_while_the_gateway_was_down_is_raised(home: Home) -> None:
    await home.send("hall/door", CLOSED)
    await home.restart()
    await home.send("hall/door", OPEN, retain=True)
    assert await home.types() == ["activity.door_opened"]


async def test_devices_match_by_ieee_topic_and_after_a_rename_in_z2m(home: Home) -> None:
    await home.send("0x00158d00045a1b2c", PRESS)
    listing = [
        {"ieee_address": "0x00158d00045a1b2c", "friendly_name": "renamed", "type": "EndDevice"}
    ]
    await home.send("bridge/devices", json.dumps(listing))
    await home.send("renamed", PRESS)
    assert await home.types() == ["alarm.button", "alarm.button"]
    assert all(e["device"]["id"] == "bedroom/button" for e in await home.events())


async def test_unknown_devices_are_reported_once_an_hour(home: Home) -> None:
    for _ in range(3):
        await home.send("kitchen/intruder", PRESS)
    home.clock.advance(minutes=61)
    await home.send("kitchen/intruder", PRESS)
    reports = await home.events()
    assert [r["type"] for r in reports] == ["technical.unknown_device"] * 2
    assert reports[0]["data"] == {
        "subject": "kitchen/intruder",
        "reason": "not allow-listed",
        "occurrences": 1,
    }
    assert reports[1]["data"]["occurrences"] == 3
    assert home.pipeline is not None and home.pipeline.counts["unknown_device"] == 4


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json",
        b'{"action":"single","action":"double"}',
        b"[1,2]",
        b'{"action":1}',
        b'{"action":"' + b"x" * 70_000 + b'"}',
        b"\xff\xfe",
        b"{" * 5000,
    ],
    ids=["text", "dupkeys", "array", "wrongtype", "oversized", "binary", "deep"],
)
async def test_garbage_is_reported_and_the_next_press_still_raises(
    home: Home, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await home.send("bedroom/button", garbage)
    await home.send("bedroom/button", garbage)
    await home.send("bedroom/button", PRESS)
    types = await home.types()
    assert types == ["technical.bad_payload", "alarm.button"]
    report = (await home.events())[0]
    assert report["device"]["id"] == "bedroom/button"
    assert report["data"]["subject"] == "bedroom/button"
    assert "xxxx" not in caplog.text and "single" not in caplog.text


async def test_a_device_with_an_unknown_profile_is_reported(tmp_path: Path) -> None:
    odd = AllowedDevice(friendly_name="odd", profile="acme.NOPE")
    home = Home(tmp_path / "gw.sqlite", Ed25519PrivateKey.generate(), FakeClock(), [odd])
    await home.start()
    try:
        await home.send("odd", PRESS)
        (event,) = await home.events()
        assert event["type"] == "technical.unknown_device"
        assert event["data"]["reason"] == "unknown profile acme.NOPE"
    finally:
        await home.stop()


async def test_availability_raised_once_and_cleared_once_in_both_formats(home: Home) -> None:
    await home.send("hall/door/availability", '{"state":"online"}')  # first report: silent
    await home.send("hall/door/availability", '{"state":"offline"}')
    await home.send("hall/door/availability", "offline")  # Z2M 1.x, same state
    await home.restart()
    await home.send("hall/door/availability", '{"state":"offline"}', retain=True)
    await home.send("hall/door/availability", "online")
    await home.send("hall/door/availability", '{"state":"online"}')
    assert await home.types() == ["technical.device_offline", "technical.device_offline_cleared"]
    assert (await home.events())[0]["device"]["id"] == "hall/door"


async def test_device_offline_is_held_back_while_the_bridge_is_offline(home: Home) -> None:
    await home.send("bridge/state", '{"state":"online"}')
    await home.send("hall/door/availability", '{"state":"online"}')
    await home.send("bridge/state", "offline")
    await home.send("hall/door/availability", '{"state":"offline"}')
    await home.send("bridge/state", '{"state":"offline"}')
    assert await home.types() == ["technical.bridge_offline"]
    await home.send("bridge/state", '{"state":"online"}')
    assert await home.types() == [
        "technical.bridge_offline",
        "technical.bridge_offline_cleared",
        "technical.device_offline",
    ]


async def test_a_device_back_before_the_bridge_raises_nothing_for_it(home: Home) -> None:
    await home.send("hall/door/availability", '{"state":"online"}')
    await home.send("bridge/state", '{"state":"offline"}')
    await home.send("hall/door/availability", '{"state":"offline"}')
    await home.send("hall/door/availability", '{"state":"online"}')
    await home.send("bridge/state", '{"state":"online"}')
    assert await home.types() == ["technical.bridge_offline", "technical.bridge_offline_cleared"]


async def test_a_redelivered_message_after_a_crash_is_not_raised_twice(home: Home) -> None:
    await home.send("bedroom/button", PRESS, mid=7)
    await home.restart()  # the PUBACK never left: the broker resends with DUP=1
    assert home.pipeline is not None
    await home.send("bedroom/button", PRESS, mid=7, dup=True)
    assert await home.types() == ["alarm.button"]
    assert home.pipeline.counts["redelivered"] == 1
    # A DUP message the gateway never stored, and a genuine repeat, both raise.
    await home.send("bedroom/button", PRESS, mid=8, dup=True)
    await home.send("bedroom/button", PRESS, mid=7)
    assert await home.types() == ["alarm.button"] * 3


async def test_a_dup_with_another_payload_under_the_same_packet_id_raises(home: Home) -> None:
    await home.send("bedroom/button", PRESS, mid=9)
    await home.send("bedroom/button", '{"action":"hold","battery":100}', mid=9, dup=True)
    assert await home.types() == ["alarm.button", "alarm.button"]


async def ingest_marks(home: Home) -> list[tuple[int, int]]:
    assert home.outbox is not None
    return await home.outbox.run(
        lambda db: db.execute("SELECT mid, acked FROM mqtt_received ORDER BY mid").fetchall()
    )


async def test_ingest_marks_are_flagged_after_the_puback_and_expire(home: Home) -> None:
    assert home.pipeline is not None
    first = home.message("bedroom/button", PRESS, mid=11)
    await home.pipeline.handle(first)
    await home.send("bedroom/button", PRESS, mid=12)
    assert await ingest_marks(home) == [(11, 0), (12, 0)]
    home.pipeline.acknowledged(first)  # the PUBACK went out
    await home.send("bedroom/button", PRESS, mid=13)  # the flag rides on the next commit
    assert await ingest_marks(home) == [(11, 1), (12, 0), (13, 0)]

    home.clock.advance(days=2)  # acknowledged marks are forgotten after a day ...
    pipeline = await home.restart()
    assert await ingest_marks(home) == [(12, 0), (13, 0)]
    await home.send("bedroom/button", PRESS, mid=12, dup=True)  # ... un-acked ones are not
    assert pipeline.counts["redelivered"] == 1
    home.clock.advance(days=6)
    await home.restart()
    assert await ingest_marks(home) == []
    assert await home.types() == ["alarm.button"] * 3


async def test_concurrent_messages_share_commits_and_keep_their_order(home: Home) -> None:
    assert home.pipeline is not None and home.outbox is not None
    before = home.outbox.transaction_count
    futures = [home.pipeline.submit(home.message("bedroom/button", PRESS)) for _ in range(40)]
    futures.append(home.pipeline.submit(home.message("hall/door", CLOSED)))
    futures.append(home.pipeline.submit(home.message("hall/door", OPEN)))
    for future in futures:
        await future
    assert await home.types() == ["alarm.button"] * 40 + ["activity.door_opened"]
    assert home.outbox.transaction_count - before < 41, "commits were not grouped"
    await home.restart()
    await home.send("hall/door", OPEN)
    assert len(await home.types()) == 41, "the door's last state was stored as open"


async def test_a_full_outbox_refuses_the_door_event_but_keeps_ingesting(tmp_path: Path) -> None:
    limits = OutboxLimits(max_rows=100, alarm_reserve_rows=10)
    home = Home(
        tmp_path / "gw.sqlite", Ed25519PrivateKey.generate(), FakeClock(), [BUTTON, DOOR], limits
    )
    pipeline = await home.start()
    try:
        assert home.outbox is not None
        filler = EventDraft(
            event_class="technical", type="technical.filler", occurred_at=home.clock()
        )
        await home.outbox.commit([filler] * 90)
        await home.send("hall/door", CLOSED)
        await home.send("hall/door", OPEN)  # activity would eat the alarm reserve: refused
        await home.send("bedroom/button", PRESS)
        types = await home.types()
        assert types.count("technical.filler") == 90
        assert types[90:] == ["alarm.button"]
        assert pipeline.counts["refused"] == 1
    finally:
        await home.stop()


async def test_a_commit_that_fails_fails_the_message(home: Home) -> None:
    assert home.pipeline is not None and home.outbox is not None
    await home.outbox.close()
    with pytest.raises(Exception, match="closed"):
        await home.send("bedroom/button", PRESS)
