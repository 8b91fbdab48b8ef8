"""``trygg gateway devices``: the allow-list as data, kept in step with Zigbee2MQTT.

The pure edits are checked for their refusals; the commands run as an installer runs them
(``gateway.cli.main``) against a real mosquitto and a simulated Zigbee2MQTT bridge.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.simulators.zigbee_home import BUTTON, DOOR, SimulatedDevice
from firmware_profiles.loader import load_profiles
from gateway import ingest_state
from gateway.cli import main
from gateway.config import AllowedDevice, GatewayConfig, load_config, save_config
from gateway.devices import (
    ConfigWatcher,
    DeviceError,
    add_device,
    move_device,
    remove_device,
    rename_device,
    update_config,
)
from gateway.inventory import (
    DeviceHealth,
    NetworkDevice,
    Status,
    save_health,
    save_network_device,
)
from gateway.outbox import Outbox
from tests.gateway.conftest import START
from tests.gateway.installer_support import gateway_config, simulated_bridge
from tests.support.mosquitto import Mosquitto

PROFILES = load_profiles()
HOME = [
    AllowedDevice(
        friendly_name="bedroom/button",
        ieee=BUTTON.ieee,
        profile="aqara.WXKG11LM",
        room="bedroom",
        resident_ref="R-1",
    ),
    AllowedDevice(
        friendly_name="hall/door", ieee=DOOR.ieee, profile="aqara.MCCGQ11LM", room="hall"
    ),
]


def home_config(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig(state_dir=tmp_path, devices=list(HOME))


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``trygg gateway <argv>`` in a worker thread (it runs its own event loop)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the pure edits ---------------------------------------------------------------------------


def test_add_appends_a_device_with_its_room_place_and_address() -> None:
    config = add_device(
        home_config(Path("/state")),
        PROFILES,
        name="kitchen/smoke",
        profile="heiman.HS1SA",
        room="kitchen",
        place="Storgata 1",
        ieee="0x00124B0001AABBCC",
    )
    added = config.devices[-1]
    assert (added.friendly_name, added.profile, added.room, added.place, added.ieee) == (
        "kitchen/smoke",
        "heiman.HS1SA",
        "kitchen",
        "Storgata 1",
        "0x00124b0001aabbcc",
    )
    assert config.devices[:2] == HOME


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"name": "bedroom/button", "profile": "aqara.WXKG11LM"}, "already allow-listed"),
        (
            {"name": "x", "profile": "aqara.WXKG11LM", "ieee": BUTTON.ieee},
            "already allow-listed as",
        ),
        ({"name": "x", "profile": "acme.NOPE"}, "there is no profile 'acme.NOPE'"),
        ({"name": "x", "profile": "aqara.WXKG11LM", "ieee": "0x12"}, "not an IEEE address"),
        ({"name": "bad name!", "profile": "aqara.WXKG11LM"}, "not a usable device name"),
        ({"name": "hall/door/set", "profile": "aqara.WXKG11LM"}, "collide with a Zigbee2MQTT"),
        ({"name": "bridge/x", "profile": "aqara.WXKG11LM"}, "collide with a Zigbee2MQTT"),
        ({"name": "a" * 129, "profile": "aqara.WXKG11LM"}, "not a usable device name"),
        ({"name": "ok", "profile": "aqara.WXKG11LM", "room": "r" * 65}, "room"),
    ],
)
def test_add_refuses_what_would_confuse_the_gateway(change: dict[str, str], refusal: str) -> None:
    with pytest.raises(DeviceError, match=refusal):
        add_device(home_config(Path("/state")), PROFILES, **change)


def test_rename_move_and_remove_keep_everything_else() -> None:
    config = home_config(Path("/state"))
    renamed = rename_device(config, "bedroom/button", "bedroom/pendant")
    assert [d.friendly_name for d in renamed.devices] == ["bedroom/pendant", "hall/door"]
    assert renamed.devices[0].model_dump(exclude={"friendly_name"}) == HOME[0].model_dump(
        exclude={"friendly_name"}
    )

    moved = move_device(config, "bedroom/button", room="room 14", place="Korttidsavdeling 2")
    pendant = moved.devices[0]
    assert (pendant.room, pendant.place) == ("room 14", "Korttidsavdeling 2")
    assert (pendant.ieee, pendant.profile, pendant.resident_ref) == (
        BUTTON.ieee,
        "aqara.WXKG11LM",
        "R-1",
    )

    remaining, removed = remove_device(config, "hall/door")
    assert removed == HOME[1] and remaining.devices == [HOME[0]]

    with pytest.raises(DeviceError, match="no allow-listed device is called 'nope'"):
        remove_device(config, "nope")
    with pytest.raises(DeviceError, match="already allow-listed"):
        rename_device(config, "bedroom/button", "hall/door")
    with pytest.raises(DeviceError, match="say where to"):
        move_device(config, "hall/door", room=None, place=None)


def test_the_file_is_replaced_atomically_keeping_its_mode_and_the_watcher_sees_it(
    tmp_path: Path,
) -> None:
    save_config(home_config(tmp_path))
    path = tmp_path / "gateway.yaml"
    path.chmod(0o640)
    watcher = ConfigWatcher(tmp_path)
    assert not watcher.changed()

    update_config(tmp_path, lambda c: move_device(c, "hall/door", room="entrance", place=None))

    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert watcher.changed() and not watcher.changed()
    assert load_config(tmp_path).devices[1].room == "entrance"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_refused_change_writes_nothing(tmp_path: Path) -> None:
    save_config(home_config(tmp_path))
    before = (tmp_path / "gateway.yaml").read_bytes()
    watcher = ConfigWatcher(tmp_path)
    with pytest.raises(DeviceError):
        update_config(tmp_path, lambda c: rename_device(c, "hall/door", "bedroom/button"))
    assert (tmp_path / "gateway.yaml").read_bytes() == before
    assert not watcher.changed()


# --- the commands, against mosquitto and a simulated Zigbee2MQTT -------------------------------


async def test_devices_add_allow_lists_and_gives_zigbee2mqtt_the_same_name(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_config(tmp_path, mosquitto)
    async with simulated_bridge(mosquitto) as bridge:
        bridge.add_member(BUTTON, name=BUTTON.ieee)  # paired, still under its address
        await bridge.publish_devices()
        code, out, err = await run(
            capsys,
            "devices", "add", "--state-dir", str(tmp_path), "--name", "bedroom/button",
            "--profile", "aqara.WXKG11LM", "--room", "bedroom", "--ieee", BUTTON.ieee,
        )  # fmt: skip
        assert (code, err) == (0, "")
        assert "Allow-listed bedroom/button (aqara.WXKG11LM) in room bedroom." in out
        member = bridge.named(BUTTON.ieee)
        assert member is not None and member.friendly_name == "bedroom/button"
    (device,) = load_config(tmp_path).devices
    assert (device.friendly_name, device.ieee, device.room) == (
        "bedroom/button",
        BUTTON.ieee,
        "bedroom",
    )


async def test_devices_rename_renames_in_zigbee2mqtt_first_and_a_refusal_changes_nothing(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_config(tmp_path, mosquitto, devices=HOME)
    async with simulated_bridge(mosquitto) as bridge:
        bridge.add_member(BUTTON, name="bedroom/button")
        bridge.add_member(DOOR, name="hall/door")
        bridge.add_member(
            BUTTON.__class__("x", "0x00158d0000000001", "M", "V", "m", "d"), name="taken"
        )
        await bridge.publish_devices()

        code, out, err = await run(
            capsys, "devices", "rename", "--state-dir", str(tmp_path),
            "--name", "bedroom/button", "--to", "bedroom/pendant",
        )  # fmt: skip
        assert (code, err) == (0, "") and "Renamed bedroom/button to bedroom/pendant." in out
        assert bridge.requests[-1].payload["from"] == "bedroom/button"
        member = bridge.named(BUTTON.ieee)
        assert member is not None and member.friendly_name == "bedroom/pendant"

        before = (tmp_path / "gateway.yaml").read_bytes()
        code, out, err = await run(
            capsys, "devices", "rename", "--state-dir", str(tmp_path),
            "--name", "hall/door", "--to", "taken",
        )  # fmt: skip
        assert code == 2 and out == ""
        assert err.startswith("trygg gateway devices rename: error: Zigbee2MQTT refused")
        assert "already in use" in err and err.count("\n") == 1
        assert (tmp_path / "gateway.yaml").read_bytes() == before
    assert [d.friendly_name for d in load_config(tmp_path).devices] == [
        "bedroom/pendant",
        "hall/door",
    ]


async def test_devices_remove_takes_it_out_of_the_network_or_says_why_not(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_config(tmp_path, mosquitto, devices=HOME)
    async with simulated_bridge(mosquitto) as bridge:
        bridge.add_member(BUTTON, name="bedroom/button")
        bridge.add_member(DOOR, name="hall/door")
        bridge.refuse_remove.add(DOOR.ieee)  # asleep: never answers the leave request
        await bridge.publish_devices()

        code, out, _ = await run(
            capsys, "devices", "remove", "--state-dir", str(tmp_path), "--name", "bedroom/button"
        )
        assert code == 0 and "removed from the Zigbee network as well" in out
        assert bridge.named(BUTTON.ieee) is None

        code, out, _ = await run(
            capsys, "devices", "remove", "--state-dir", str(tmp_path), "--name", "hall/door"
        )
        assert code == 0 and "Removed hall/door from the allow-list." in out
        assert "still in the Zigbee network" in out and "mgmtLeaveRsp" in out
        assert bridge.named(DOOR.ieee) is not None
    assert load_config(tmp_path).devices == []


async def test_devices_move_changes_room_and_place_only(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_config(tmp_path, mosquitto, devices=HOME)
    code, out, _ = await run(
        capsys, "devices", "move", "--state-dir", str(tmp_path), "--name", "bedroom/button",
        "--room", "room 14", "--place", "Korttidsavdeling 2",
    )  # fmt: skip
    assert code == 0
    assert "Moved bedroom/button to room room 14, place Korttidsavdeling 2" in out
    moved = load_config(tmp_path).devices[0]
    assert moved.model_dump(exclude={"room", "place"}) == HOME[0].model_dump(
        exclude={"room", "place"}
    )


async def test_devices_without_zigbee2mqtt_fail_in_one_line(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_config(tmp_path, mosquitto, devices=HOME)
    mosquitto.stop()
    code, out, err = await run(
        capsys, "devices", "remove", "--state-dir", str(tmp_path), "--name", "hall/door"
    )
    assert code == 2 and out == ""
    assert err.startswith(
        "trygg gateway devices remove: error: cannot reach the home's MQTT broker"
    )
    assert len(load_config(tmp_path).devices) == 2


async def test_devices_lists_room_profile_battery_link_last_seen_and_state(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gateway_config(tmp_path, mosquitto, devices=HOME)
    outbox = await Outbox.open(
        config.database_file,
        key=Ed25519PrivateKey.generate(),
        gateway_id="gw-test",
        migrations=ingest_state.MIGRATIONS,
    )

    def write(db: sqlite_utils.Database) -> None:
        network: list[tuple[str, str, str | None, Status]] = [
            (BUTTON.ieee, "bedroom/button", "bedroom/button", "trusted"),
            (DOOR.ieee, "hall/door", "hall/door", "trusted"),
            ("0x90fd9ffffe6494fc", "0x90fd9ffffe6494fc", None, "unknown"),
        ]
        for ieee, name, allowed, status in network:
            save_network_device(
                db,
                NetworkDevice(
                    ieee=ieee, friendly_name=name, interview="successful", in_network=True,
                    match="matched" if allowed else "no_profile", status=status,
                    reason="" if allowed else "no Trygg profile for IKEA LED1624G9",
                    first_seen_at=START, updated_at=START, allowed_name=allowed,
                    model="LED1624G9" if not allowed else None,
                ),
            )  # fmt: skip
        save_health(
            db,
            DeviceHealth(
                device="bedroom/button", updated_at=START, ieee=BUTTON.ieee,
                profile="aqara.WXKG11LM", room="bedroom", availability="online",
                last_heard_at=START, battery=Decimal(87), linkquality=96,
            ),
        )  # fmt: skip
        save_health(
            db,
            DeviceHealth(
                device="hall/door", updated_at=START, ieee=DOOR.ieee, profile="aqara.MCCGQ11LM",
                room="hall", last_heard_at=START, raised=frozenset({"silent"}), battery=Decimal(9),
            ),
        )  # fmt: skip

    await outbox.run(write)
    await outbox.close()

    code, out, _ = await run(capsys, "devices", "--state-dir", str(tmp_path))
    assert code == 0
    header, button, door, bulb = out.splitlines()
    assert header.split() == [
        "NAME",
        "ROOM",
        "PLACE",
        "PROFILE",
        "BATTERY",
        "LINK",
        "LAST",
        "SEEN",
        "STATE",
    ]
    assert button.split()[:6] == ["bedroom/button", "bedroom", "-", "aqara.WXKG11LM", "87", "%"]
    assert button.split()[6] == "96" and button.endswith("online")
    assert door.startswith("hall/door") and "9 %" in door and door.endswith("silent")
    assert bulb.startswith("0x90fd9ffffe6494fc") and "LED1624G9" in bulb
    assert bulb.endswith("not allow-listed (unknown)")

    code, out, _ = await run(capsys, "devices", "--state-dir", str(tmp_path), "--json")
    listed = {row["name"]: row for row in json.loads(out)}
    assert listed["bedroom/button"]["battery"] == 87
    assert listed["hall/door"]["state"] == "silent"
    assert listed["0x90fd9ffffe6494fc"]["allow_listed"] is False


SMOKE = SimulatedDevice(
    "kitchen/smoke",
    "0x00124b0022a1b2c3",
    "HS1SA",
    "HEIMAN",
    "SmokeSensor-N-3.0",
    "Smoke detector",
)


async def test_adding_a_smoke_detector_asks_it_to_report_as_often_as_supervision_expects(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_config(tmp_path, mosquitto)
    (expected,) = PROFILES["heiman.HS1SA"].supervision.reporting
    async with simulated_bridge(mosquitto) as bridge:
        bridge.add_member(SMOKE)
        await bridge.publish_devices()
        code, out, err = await run(
            capsys,
            "devices", "add", "--state-dir", str(tmp_path), "--name", SMOKE.friendly_name,
            "--profile", "heiman.HS1SA", "--room", "kitchen", "--ieee", SMOKE.ieee,
        )  # fmt: skip
        assert (code, err) == (0, ""), out
        assert "not configured" not in out
        (request,) = await bridge.wait_for_request("device/configure_reporting")
    assert request["id"] == SMOKE.friendly_name
    assert request["attribute"] == expected.attribute == "batteryPercentageRemaining"
    assert request["maximum_report_interval"] == expected.maximum_report_interval == 3600


async def test_a_reporting_request_zigbee2mqtt_refuses_is_told_to_the_installer(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_config(tmp_path, mosquitto)
    async with simulated_bridge(mosquitto) as bridge:
        await bridge.publish_devices()  # the detector is not in the Zigbee network
        code, out, _ = await run(
            capsys,
            "devices", "add", "--state-dir", str(tmp_path), "--name", SMOKE.friendly_name,
            "--profile", "heiman.HS1SA", "--room", "kitchen", "--ieee", SMOKE.ieee,
        )  # fmt: skip
    assert code == 0  # allow-listed all the same: supervision will say if it stays silent
    assert "reporting of genPowerCfg.batteryPercentageRemaining not configured" in out
    assert [d.friendly_name for d in load_config(tmp_path).devices] == [SMOKE.friendly_name]
