"""End to end: a simulated Zigbee2MQTT home → real mosquitto → MQTT ingest → outbox on disk.

The broker's own log is the observer for acknowledgements: the gateway cannot fake a
"Received PUBACK" line, and a resent PUBLISH with ``d1`` proves the broker never had one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.simulators.zigbee_home import BUTTON, DOOR, ZigbeeHome
from firmware_profiles.loader import load_profiles
from gateway.config import AllowedDevice, BrokerConfig
from gateway.ingest_state import MIGRATIONS
from gateway.mqtt_ingest import run_mqtt_ingest
from gateway.outbox import EventDraft, Outbox
from gateway.pipeline import IngestPipeline
from tests.support.mosquitto import Mosquitto
from tests.support.wait import eventually
from trygg.wire.envelope import SignedEvent

T = TypeVar("T")
CLIENT_ID = "trygg-gw-test"
DEVICES = [
    AllowedDevice(friendly_name=BUTTON.friendly_name, ieee=BUTTON.ieee, profile="aqara.WXKG11LM"),
    AllowedDevice(friendly_name=DOOR.friendly_name, ieee=DOOR.ieee, profile="aqara.MCCGQ11LM"),
]
Also = Callable[[sqlite_utils.Database], None] | None


async def within(awaitable: Awaitable[T], seconds: float = 10.0) -> T:
    return await asyncio.wait_for(awaitable, seconds)


@dataclass
class Gateway:
    """The gateway's ingest side as a restartable unit: outbox, pipeline, MQTT loop."""

    broker: Mosquitto
    path: Path
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    alarms: asyncio.Queue[SignedEvent] = field(default_factory=asyncio.Queue)
    subscribed: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    outbox: Outbox | None = None
    pipeline: IngestPipeline | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def start(self, outbox_class: type[Outbox] = Outbox) -> IngestPipeline:
        self.outbox = await outbox_class.open(
            self.path, key=self.key, gateway_id="gw-test", migrations=MIGRATIONS
        )
        self.pipeline = IngestPipeline(
            self.outbox, load_profiles(), DEVICES, on_alarm_committed=self.alarms.put_nowait
        )
        await self.pipeline.start()
        self.stop_event = asyncio.Event()
        config = BrokerConfig(host=self.broker.host, port=self.broker.port, client_id=CLIENT_ID)
        self.task = asyncio.create_task(
            run_mqtt_ingest(
                config,
                self.pipeline,
                self.stop_event,
                on_subscribed=lambda: self.subscribed.put_nowait(None),
                backoff_initial_s=0.05,
                backoff_max_s=0.2,
            )
        )
        await within(self.subscribed.get())
        return self.pipeline

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await within(self.task)
            self.task = None
        if self.outbox is not None:
            await self.outbox.close()
            self.outbox = None

    async def types(self) -> list[str]:
        assert self.outbox is not None
        rows = await self.outbox.run(
            lambda db: db.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
        )
        return [json.loads(body)["type"] for (body,) in rows]

    async def wait_types(self, n: int) -> list[str]:
        return await eventually(self.types, lambda t: len(t) >= n, what=f"{n} events")


@pytest.fixture
async def gateway(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(mosquitto, tmp_path / "gateway.sqlite")
    yield gw
    if mosquitto.running:
        await gw.stop()
    else:
        gw.stop_event.set()
        if gw.task is not None:
            await within(gw.task)
        if gw.outbox is not None:
            await gw.outbox.close()


@pytest.fixture
async def home(mosquitto: Mosquitto) -> AsyncIterator[ZigbeeHome]:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="sim-z2m") as client:
        yield ZigbeeHome(client)


def gated_outbox(gate: asyncio.Event, entered: asyncio.Event) -> type[Outbox]:
    """A real outbox whose event commits wait at a gate: the crash window, held open."""

    class GatedOutbox(Outbox):
        async def commit(self, drafts: Sequence[EventDraft], *, also: Also = None) -> list[Any]:
            if drafts:
                entered.set()
                await gate.wait()
            return await super().commit(drafts, also=also)

    return GatedOutbox


def failing_once_outbox() -> type[Outbox]:
    """A real outbox whose first event commit fails as a full or broken disk would."""
    failed: list[bool] = []

    class FailingOutbox(Outbox):
        async def commit(self, drafts: Sequence[EventDraft], *, also: Also = None) -> list[Any]:
            if drafts and not failed:
                failed.append(True)
                raise sqlite3.OperationalError("disk I/O error (simulated)")
            return await super().commit(drafts, also=also)

    return FailingOutbox


async def test_button_and_door_become_outbox_rows(gateway: Gateway, home: ZigbeeHome) -> None:
    await gateway.start()
    await home.announce()
    await home.close_door()  # first report: learnt, nothing raised
    await home.open_door()
    await home.close_door()
    await home.press(clear_after=True)
    alarm = await within(gateway.alarms.get())
    assert alarm.event.type == "alarm.button"
    assert alarm.event.vkp_alert_code == "3"
    assert await gateway.wait_types(3) == [
        "activity.door_opened",
        "activity.door_closed",
        "alarm.button",
    ]


async def test_bad_input_is_reported_and_never_blocks_the_next_alarm(
    gateway: Gateway, home: ZigbeeHome, mosquitto: Mosquitto
) -> None:
    pipeline = await gateway.start()
    await home.publish("kitchen/intruder", '{"action":"single"}')
    await home.publish(BUTTON.friendly_name, b"\x00garbage{")
    await home.publish(BUTTON.friendly_name, b'{"action":"' + b"x" * 100_000 + b'"}')
    await home.publish("bridge/state", b"sleepy")
    await home.press()
    await within(gateway.alarms.get())
    assert await gateway.wait_types(4) == [
        "technical.unknown_device",
        "technical.bad_payload",
        "technical.bad_payload",
        "alarm.button",
    ]
    assert pipeline.counts["bad_payload"] == 3
    # every one of the five messages was acknowledged
    await eventually(
        lambda: asyncio.to_thread(mosquitto.log_lines),
        lambda lines: sum(f"Received PUBACK from {CLIENT_ID}" in line for line in lines) >= 5,
        what="five PUBACKs",
    )


async def test_puback_only_after_commit_and_no_second_alarm_after_a_crash(
    gateway: Gateway, home: ZigbeeHome, mosquitto: Mosquitto
) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    await gateway.start(gated_outbox(gate, entered))
    mark = mosquitto.mark()
    await home.press()
    await within(entered.wait())
    # The alarm is not committed yet, so the broker must not have its PUBACK.
    assert not any(f"PUBACK from {CLIENT_ID}" in line for line in mosquitto.log_lines()[mark:])

    # Crash window: the connection goes away while the commit is still pending ...
    gateway.stop_event.set()
    await mosquitto.log_line(rf"Client {CLIENT_ID} disconnected", after=mark)
    gate.set()  # ... and the commit then completes: stored, never acknowledged.
    assert gateway.task is not None
    await within(gateway.task)
    assert await gateway.types() == ["alarm.button"]
    await gateway.outbox.close() if gateway.outbox else None
    gateway.outbox = None

    # The restarted gateway gets the same message again (DUP=1, same packet id).
    restarted = await gateway.start()
    await mosquitto.log_line(rf"Sending PUBLISH to {CLIENT_ID} \(d1, q1", after=mark)
    await mosquitto.log_line(rf"Received PUBACK from {CLIENT_ID}", after=mark)
    assert restarted.counts["redelivered"] == 1
    assert await gateway.types() == ["alarm.button"]
    # and a genuine second press afterwards still raises
    await home.press()
    await within(gateway.alarms.get())
    assert await gateway.wait_types(2) == ["alarm.button", "alarm.button"]


async def test_a_failed_commit_is_not_acked_and_the_resent_message_is_stored_once(
    gateway: Gateway, home: ZigbeeHome, mosquitto: Mosquitto
) -> None:
    pipeline = await gateway.start(failing_once_outbox())
    mark = mosquitto.mark()
    await home.press()
    alarm = await within(gateway.alarms.get())
    assert alarm.event.type == "alarm.button"
    await within(gateway.subscribed.get())  # ingest reconnected after the failure
    await mosquitto.log_line(rf"Sending PUBLISH to {CLIENT_ID} \(d1, q1", after=mark)
    assert await gateway.types() == ["alarm.button"]
    assert pipeline.counts["redelivered"] == 0


async def test_presses_while_the_gateway_is_down_arrive_when_it_returns(
    gateway: Gateway, mosquitto: Mosquitto
) -> None:
    await gateway.start()
    await gateway.stop()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="sim-z2m") as client:
        await ZigbeeHome(client).press()
        await ZigbeeHome(client).press("hold")
    # The broker restarts too while the gateway is away; its persistence keeps both.
    await asyncio.to_thread(mosquitto.restart, keep_state=True)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="sim-z2m-2") as client:
        await ZigbeeHome(client).open_door()
    await gateway.start()
    for _ in range(2):
        await within(gateway.alarms.get())
    assert await gateway.types() == ["alarm.button", "alarm.button"]


async def test_ingest_resubscribes_after_the_broker_lost_everything(
    gateway: Gateway, mosquitto: Mosquitto
) -> None:
    await gateway.start()
    await asyncio.to_thread(mosquitto.restart, keep_state=False)
    await within(gateway.subscribed.get())
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="sim-z2m") as client:
        await ZigbeeHome(client).press()
    alarm = await within(gateway.alarms.get())
    assert alarm.event.type == "alarm.button"


async def test_stop_while_the_broker_is_down_returns_promptly(
    gateway: Gateway, mosquitto: Mosquitto
) -> None:
    await gateway.start()
    await asyncio.to_thread(mosquitto.stop)
    gateway.stop_event.set()
    assert gateway.task is not None
    await within(gateway.task, 5)


def dying_outbox(gate: asyncio.Event, entered: asyncio.Event) -> type[Outbox]:
    """A real outbox whose event commits wait at a gate and then fail: the process died."""

    class DyingOutbox(Outbox):
        async def commit(self, drafts: Sequence[EventDraft], *, also: Also = None) -> list[Any]:
            if drafts:
                entered.set()
                await gate.wait()
                raise OSError("the gateway died before this commit")
            return await super().commit(drafts, also=also)

    return DyingOutbox


async def test_a_press_reusing_an_old_packet_id_after_the_broker_lost_its_session_still_raises(
    gateway: Gateway, mosquitto: Mosquitto
) -> None:
    async def press() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="sim-z2m") as client:
            await ZigbeeHome(client).press()

    # First life: a press is stored and acknowledged; its redelivery mark is kept a day.
    await gateway.start()
    await press()
    await within(gateway.alarms.get())
    await gateway.stop()

    # The broker loses everything, so packet ids to the gateway start again from 1, and an
    # identical press arrives with the old press's id; the gateway dies before committing it.
    await asyncio.to_thread(mosquitto.restart, keep_state=False)
    gate, entered = asyncio.Event(), asyncio.Event()
    await gateway.start(dying_outbox(gate, entered))
    mark = mosquitto.mark()
    await press()
    await within(entered.wait())
    gateway.stop_event.set()
    await mosquitto.log_line(rf"Client {CLIENT_ID} disconnected", after=mark)
    gate.set()
    assert gateway.task is not None
    await within(gateway.task)
    await gateway.outbox.close() if gateway.outbox else None
    gateway.outbox = None

    # The broker resends it (DUP=1): it is a new press, not the old one, and must raise.
    restarted = await gateway.start()
    await mosquitto.log_line(rf"Sending PUBLISH to {CLIENT_ID} \(d1, q1", after=mark)
    await within(gateway.alarms.get())
    assert await gateway.types() == ["alarm.button", "alarm.button"]
    assert restarted.counts["redelivered"] == 0
