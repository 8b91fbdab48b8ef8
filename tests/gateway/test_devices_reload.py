"""A running gateway takes allow-list changes without a restart: on SIGHUP, and when the file
changes. The daemon runs in-process against a real mosquitto and the HTTPS test centre; what
the centre receives is the proof."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from drivers.simulators.zigbee_home import BUTTON, DOOR, ZigbeeHome
from firmware_profiles.loader import load_profiles
from gateway.config import AllowedDevice, BrokerConfig, GatewayConfig, save_config
from gateway.daemon import run_gateway
from gateway.devices import add_device, remove_device, update_config
from gateway.identity import init_gateway, load_signing_key, save_enrolment
from gateway.outbox import open_read_only
from tests.gateway.conftest import LocalCentre
from tests.gateway.test_uplink import enrolment_for
from tests.support.mosquitto import Mosquitto
from tests.support.wait import eventually

PROFILES = load_profiles()
BUTTON_ENTRY = AllowedDevice(
    friendly_name=BUTTON.friendly_name, ieee=BUTTON.ieee, profile="aqara.WXKG11LM", room="bedroom"
)


@dataclass
class Running:
    state_dir: Path
    home: ZigbeeHome
    centre: LocalCentre
    reload: asyncio.Event

    def types(self) -> list[str]:
        return [e.type for e in self.centre.events]

    def stored_types(self) -> list[str]:
        """Event types in the gateway's own outbox, read-only beside the running daemon."""
        conn = open_read_only(self.state_dir / "gateway.sqlite")
        try:
            return [str(r[0]) for r in conn.execute("SELECT type FROM outbox")]
        finally:
            conn.close()

    async def centre_sees_allow_list(self, names: set[str]) -> None:
        """Wait for a heartbeat whose inventory allow-lists exactly ``names``: the daemon
        asks for one as soon as it has reloaded."""

        async def latest() -> set[str] | None:
            for beat in reversed(self.centre.heartbeats):
                if beat.inventory is not None:
                    return {d.name for d in beat.inventory.devices if d.allow_listed}
            return None

        await eventually(latest, lambda seen: seen == names, what="the new allow-list", timeout=15)

    async def centre_has(self, kind: str) -> None:
        async def types() -> list[str]:
            return self.types()

        await eventually(types, lambda seen: kind in seen, what=kind, timeout=15)


@contextlib.asynccontextmanager
async def running_gateway(
    tmp_path: Path,
    mosquitto: Mosquitto,
    centre: LocalCentre,
    devices: list[AllowedDevice],
    *,
    tick_s: float,
) -> AsyncIterator[Running]:
    state_dir = tmp_path / "gateway"
    init_gateway(state_dir)
    centre.enrol_directly(load_signing_key(state_dir))
    save_enrolment(state_dir, enrolment_for(centre))
    config = GatewayConfig(
        state_dir=state_dir,
        broker=BrokerConfig(port=mosquitto.port, client_id="trygg-reload-test"),
        devices=devices,
    )
    save_config(config)
    stop, ready, reload = asyncio.Event(), asyncio.Event(), asyncio.Event()
    daemon = asyncio.create_task(
        run_gateway(
            config, stop, on_ready=ready.set, reload_requested=reload, allow_list_tick_s=tick_s
        )
    )
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        client = aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="reload-home")
        async with client:
            home = ZigbeeHome(client)
            await home.announce()
            yield Running(state_dir, home, centre, reload)
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await daemon


async def test_sighup_reloads_the_allow_list_at_once(
    tmp_path: Path, mosquitto: Mosquitto, centre: LocalCentre
) -> None:
    # With an hour between looks at the file, only SIGHUP can make the change count now.
    async with running_gateway(tmp_path, mosquitto, centre, [BUTTON_ENTRY], tick_s=3600) as gw:
        await gw.home.close_door()
        await gw.home.open_door()
        await gw.home.press()
        await gw.centre_has("alarm.button")
        # The door's messages came first and are committed (in order) by now: not allow-listed,
        # they made no event at all.
        assert gw.stored_types().count("activity.door_opened") == 0

        update_config(
            gw.state_dir,
            lambda c: add_device(
                c, PROFILES, name=DOOR.friendly_name, profile="aqara.MCCGQ11LM", room="hall"
            ),
        )
        gw.reload.set()  # what SIGHUP does
        await gw.centre_sees_allow_list({BUTTON.friendly_name, DOOR.friendly_name})
        await gw.home.close_door()  # its first report is only recorded
        await gw.home.open_door()
        await gw.centre_has("activity.door_opened")


async def test_a_changed_file_is_picked_up_by_the_running_daemon(
    tmp_path: Path, mosquitto: Mosquitto, centre: LocalCentre
) -> None:
    door = AllowedDevice(
        friendly_name=DOOR.friendly_name, ieee=DOOR.ieee, profile="aqara.MCCGQ11LM", room="hall"
    )
    async with running_gateway(tmp_path, mosquitto, centre, [BUTTON_ENTRY, door], tick_s=0.1) as gw:
        await gw.home.press()
        await gw.centre_has("alarm.button")

        update_config(gw.state_dir, lambda c: remove_device(c, BUTTON.friendly_name)[0])
        await gw.centre_sees_allow_list({DOOR.friendly_name})

        # The removed button is no longer trusted: its press raises nothing. The door events
        # after it are committed later, and the uplink sends alarms first, so once they are
        # at the centre an alarm from that press would be there too.
        await gw.home.press()
        await gw.home.close_door()
        await gw.home.open_door()
        await gw.centre_has("activity.door_opened")
        assert gw.types().count("alarm.button") == 1
