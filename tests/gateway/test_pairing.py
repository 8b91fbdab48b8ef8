"""``trygg gateway pair`` against a real mosquitto and a simulated Zigbee2MQTT bridge.

The window's end is decided by an injected clock, so a three-minute window takes as long
as the test needs and no longer; what the installer sees is waited for line by line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.pairing import PairingError, PairingOptions, PairingSession
from tests.gateway.conftest import FakeClock
from tests.gateway.installer_support import (
    BULB,
    NEW_BUTTON,
    NEW_DOOR,
    UNSUPPORTED_IEEE,
    Lines,
    gateway_config,
    simulated_bridge,
)
from tests.support.mosquitto import Mosquitto


def closes(payload: object) -> bool:
    """A permit_join request that closes the network, in the 2.x or the 1.x form."""
    return isinstance(payload, dict) and (payload.get("time") == 0 or payload.get("value") is False)


async def test_window_opens_shows_each_device_with_its_profile_and_closes_at_its_end(
    tmp_path: Path, mosquitto: Mosquitto, clock: FakeClock
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    lines = Lines()
    async with simulated_bridge(mosquitto) as bridge:
        session = PairingSession(
            config, PairingOptions(minutes=3, room="Bedroom", add=True), lines, clock=clock
        )
        task = asyncio.create_task(session.run())
        await lines.wait_for(r"Pairing window open for 3 min \(Zigbee2MQTT 2\.6\.2\)")
        assert bridge.join_open

        assert await bridge.join(NEW_BUTTON)
        await lines.wait_for(rf"\+ {NEW_BUTTON.ieee} joined the network; waiting")
        await lines.wait_for(
            rf"= {NEW_BUTTON.ieee} is Aqara WXKG11LM \(Wireless mini switch\): "
            r"profile aqara\.WXKG11LM \(button\)"
        )
        await lines.wait_for(r"allow-listed as bedroom/button in room Bedroom")

        assert await bridge.join(BULB)
        await lines.wait_for(rf"! {BULB.ieee} is IKEA LED1624G9 .*: no Trygg profile for IKEA")
        assert await bridge.join(None, ieee=UNSUPPORTED_IEEE)
        await lines.wait_for(rf"! {UNSUPPORTED_IEEE} is a device: Zigbee2MQTT has no definition")
        assert await bridge.join(NEW_DOOR, interview="failed")
        await lines.wait_for(rf"! {NEW_DOOR.ieee}: the interview failed")

        clock.advance(3 * 60)
        summary = await asyncio.wait_for(task, 10)

        assert summary.closed
        assert lines.lines[-1].startswith("Pairing window closed. 1 device(s) allow-listed")
        opened, closed = bridge.permit_join_requests()
        assert opened["time"] == 180 and "value" not in opened  # the Z2M 2.x form
        assert closes(closed) and closed["time"] == 0
        assert not bridge.join_open
        # The matched device is allow-listed by name, room and address, and Z2M uses that name.
        (device,) = load_config(tmp_path).devices
        assert (device.friendly_name, device.profile, device.room, device.ieee) == (
            "bedroom/button",
            "aqara.WXKG11LM",
            "Bedroom",
            NEW_BUTTON.ieee,
        )
        member = bridge.named(NEW_BUTTON.ieee)
        assert member is not None and member.friendly_name == "bedroom/button"
        # Nothing that matched no profile was trusted.
        assert {c.ieee for c in summary.joined if c.allow_listed_as} == {NEW_BUTTON.ieee}


async def test_zigbee2mqtt_1x_gets_the_value_form_so_the_close_really_closes(
    tmp_path: Path, mosquitto: Mosquitto, clock: FakeClock
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    lines = Lines()
    async with simulated_bridge(mosquitto, version="1.42.0") as bridge:
        task = asyncio.create_task(
            PairingSession(config, PairingOptions(minutes=1), lines, clock=clock).run()
        )
        await lines.wait_for(r"Pairing window open for 1 min \(Zigbee2MQTT 1\.42\.0\)")
        assert bridge.join_open
        assert await bridge.join(NEW_DOOR)
        await lines.wait_for(r"profile aqara\.MCCGQ11LM \(door\)")
        await lines.wait_for(r"not allow-listed; to add it: trygg gateway devices add --name door")
        clock.advance(61)
        summary = await asyncio.wait_for(task, 10)
    assert summary.closed and not bridge.join_open
    assert bridge.permit_join_requests() == [
        {"value": True, "time": 60, "transaction": bridge.permit_join_requests()[0]["transaction"]},
        {"value": False, "transaction": bridge.permit_join_requests()[1]["transaction"]},
    ]
    assert load_config(tmp_path).devices == []


async def test_an_interrupted_window_is_closed(
    tmp_path: Path, mosquitto: Mosquitto, clock: FakeClock
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    lines = Lines()
    async with simulated_bridge(mosquitto) as bridge:
        task = asyncio.create_task(
            PairingSession(config, PairingOptions(minutes=10), lines, clock=clock).run()
        )
        await lines.wait_for(r"Pairing window open for 10 min")
        assert bridge.join_open
        task.cancel()  # what Ctrl-C does to the command's main task
        with pytest.raises(asyncio.CancelledError):
            await task
        assert closes(bridge.permit_join_requests()[-1])
        assert not bridge.join_open
    assert lines.lines[-1].startswith("Pairing window closed.")


async def test_a_stop_request_closes_the_window_and_a_device_then_cannot_join(
    tmp_path: Path, mosquitto: Mosquitto, clock: FakeClock
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    lines = Lines()
    stop = asyncio.Event()
    async with simulated_bridge(mosquitto) as bridge:
        task = asyncio.create_task(
            PairingSession(config, PairingOptions(minutes=2), lines, clock=clock, stop=stop).run()
        )
        await lines.wait_for(r"Pairing window open")
        stop.set()  # SIGTERM
        summary = await asyncio.wait_for(task, 10)
        assert summary.closed
        assert not await bridge.join(NEW_BUTTON)
    assert lines.matching(r"joined the network") == []


async def test_a_ten_minute_window_is_renewed_before_zigbee_closes_it(
    tmp_path: Path, mosquitto: Mosquitto, clock: FakeClock
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    lines = Lines()
    async with simulated_bridge(mosquitto, clock=clock) as bridge:
        task = asyncio.create_task(
            PairingSession(config, PairingOptions(minutes=10), lines, clock=clock).run()
        )
        await lines.wait_for(r"Pairing window open for 10 min")
        assert bridge.permit_join_requests()[0]["time"] == 254  # Zigbee's most per request
        for renewal in range(2, 4):
            clock.advance(234)  # 20 s before the bridge would close it
            await asyncio.wait_for(bridge.wait_for_request("permit_join", renewal), 10)
            assert bridge.join_open
        requests = bridge.permit_join_requests()
        assert [r["time"] for r in requests] == [254, 254, 600 - 2 * 234 + 1]
        clock.advance(600)
        await asyncio.wait_for(task, 10)
        assert closes(bridge.permit_join_requests()[-1]) and not bridge.join_open


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        (PairingOptions(minutes=0), "1 to 10 minutes"),
        (PairingOptions(minutes=11), "1 to 10 minutes"),
        (PairingOptions(minutes=3, add=True), "--add needs --room"),
    ],
)
async def test_unbounded_or_incomplete_requests_are_refused_before_anything_opens(
    tmp_path: Path, mosquitto: Mosquitto, options: PairingOptions, refusal: str
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    async with simulated_bridge(mosquitto) as bridge:
        with pytest.raises(PairingError, match=refusal):
            await PairingSession(config, options, Lines()).run()
        assert bridge.permit_join_requests() == []


async def test_a_bridge_that_reports_itself_offline_gets_no_request(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    async with simulated_bridge(mosquitto) as bridge:
        await bridge.publish("bridge/state", {"state": "offline"}, retain=True)
        with pytest.raises(PairingError, match="offline"):
            await PairingSession(config, PairingOptions(minutes=1), Lines()).run()
        assert bridge.permit_join_requests() == []
