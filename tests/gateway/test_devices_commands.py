"""Device commands from the centre, as the daemon's installer side takes them from heartbeat
answers: only signed ones for this gateway, each applied once, each result reported until the
centre has it; and the inventory sent when it changed. The daemon's parts are real (outbox on
disk, pipeline, uplink object); the heartbeat answers are built here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_profiles.loader import load_profiles
from gateway import ingest_state
from gateway.config import AllowedDevice, GatewayConfig, UplinkConfig, load_config, save_config
from gateway.identity import Enrolment
from gateway.installer_bridge import BridgeError
from gateway.installer_cli import request_test_alarm
from gateway.installer_control import InstallerControl, build_inventory, parse_test_request
from gateway.inventory import DeviceRecord
from gateway.pipeline import IngestPipeline
from gateway.uplink import HeartbeatExtras, Uplink
from tests.gateway.conftest import START, FakeClock, LocalCentre, OpenOutbox
from tests.gateway.installer_support import gateway_config
from tests.gateway.test_uplink import enrolment_for
from tests.support.mosquitto import Mosquitto
from trygg.wire.canonical import canonical_json
from trygg.wire.jws import b64url_encode, key_id, public_key_bytes
from trygg.wire.messages import DeviceCommand, Heartbeat, HeartbeatAnswer, sign_commands

PROFILES = load_profiles()
BUTTON = AllowedDevice(
    friendly_name="bedroom/button",
    ieee="0x00158d00045a1b2c",
    profile="aqara.WXKG11LM",
    room="bedroom",
)


@dataclass
class Side:
    control: InstallerControl
    centre_key: Ed25519PrivateKey
    state_dir: Path

    def answer(
        self,
        *commands: DeviceCommand,
        key: Ed25519PrivateKey | None = None,
        gateway_id: str = "gw-test",
        digest: str | None = None,
    ) -> HeartbeatAnswer:
        signer = key or self.centre_key
        sig = sign_commands(gateway_id, commands, signer, key_id(signer.public_key()))
        return HeartbeatAnswer(
            heartbeat_interval_s=60,
            server_time="2026-11-22T12:00:00.000Z",
            inventory_digest=digest,
            commands=[c.model_dump(mode="json", exclude_none=True) for c in commands],
            commands_sig=sig,
        )

    def devices(self) -> list[AllowedDevice]:
        return load_config(self.state_dir).devices


@pytest.fixture
async def side(
    tmp_path: Path, open_outbox: OpenOutbox, clock: FakeClock, gateway_key: Ed25519PrivateKey
) -> AsyncIterator[Side]:
    config = GatewayConfig(state_dir=tmp_path, devices=[BUTTON])
    save_config(config)
    centre_key = Ed25519PrivateKey.generate()
    enrolment = Enrolment(
        center_url="https://127.0.0.1:9",
        gateway_id="gw-test",
        municipality="0301",
        home="H-1",
        center_public_key=b64url_encode(public_key_bytes(centre_key.public_key())),
        center_kid=key_id(centre_key.public_key()),
        heartbeat_interval_s=60,
        enrolled_at="2026-11-22T12:00:00.000Z",
    )
    outbox = await open_outbox(migrations=ingest_state.MIGRATIONS)
    pipeline = IngestPipeline(outbox, PROFILES, config.devices, clock)
    await pipeline.start()
    uplink = Uplink(outbox, enrolment, gateway_key, UplinkConfig(), clock=clock)
    control = InstallerControl(config, outbox, uplink, pipeline, enrolment, PROFILES, clock)
    await control.start()
    try:
        yield Side(control, centre_key, tmp_path)
    finally:
        await uplink.aclose()


def cmd(id_: int, op: str, name: str, **fields: str) -> DeviceCommand:
    return DeviceCommand.model_validate(
        {"id": id_, "gateway_id": "gw-test", "op": op, "name": name, **fields}
    )


async def test_signed_commands_are_applied_once_and_reported_until_the_centre_has_them(
    side: Side,
) -> None:
    add = cmd(7, "add", "hall/door", profile="aqara.MCCGQ11LM", room="hall")
    move = cmd(8, "move", "bedroom/button", room="room 14", place="Korttidsavdeling 2")
    await side.control.heartbeat_answered(HeartbeatExtras(), side.answer(move, add))
    assert [d.friendly_name for d in side.devices()] == ["bedroom/button", "hall/door"]
    assert (side.devices()[0].room, side.devices()[0].place) == ("room 14", "Korttidsavdeling 2")
    # The pipeline uses the new allow-list at once.
    assert {d.friendly_name for d in side.control.pipeline.allowed} == {
        "bedroom/button",
        "hall/door",
    }

    extras = await side.control.heartbeat_extras()
    assert [(r.id, r.status) for r in extras.command_results] == [(7, "applied"), (8, "applied")]
    # Until a heartbeat carrying them is answered, they are sent again.
    assert (await side.control.heartbeat_extras()).command_results == extras.command_results
    await side.control.heartbeat_answered(extras, side.answer())
    assert (await side.control.heartbeat_extras()).command_results == ()

    # The centre sends one again (it lacks the result): not applied twice, reported again.
    await side.control.heartbeat_answered(HeartbeatExtras(), side.answer(add))
    assert [d.friendly_name for d in side.devices()] == ["bedroom/button", "hall/door"]
    again = await side.control.heartbeat_extras()
    assert [(r.id, r.status) for r in again.command_results] == [(7, "applied")]


async def test_a_command_that_cannot_be_applied_fails_with_a_reason(side: Side) -> None:
    results = await side.control.apply_commands(
        [
            cmd(1, "remove", "nothing/here"),
            cmd(2, "add", "kitchen/x", profile="acme.NOPE", room="kitchen"),
            cmd(3, "rename", "bedroom/button", to="bedroom/pendant"),
        ]
    )
    assert [(r.id, r.status) for r in results] == [(1, "failed"), (2, "failed"), (3, "applied")]
    assert results[0].reason is not None and "no allow-listed device" in results[0].reason
    assert results[1].reason is not None and "there is no profile 'acme.NOPE'" in results[1].reason
    assert [d.friendly_name for d in side.devices()] == ["bedroom/pendant"]


@pytest.mark.parametrize("forgery", ["wrong_key", "other_gateway", "unsigned", "tampered"])
async def test_commands_that_do_not_verify_change_nothing(
    side: Side, forgery: str, caplog: pytest.LogCaptureFixture
) -> None:
    remove = cmd(9, "remove", "bedroom/button")
    if forgery == "wrong_key":
        answer = side.answer(remove, key=Ed25519PrivateKey.generate())
    elif forgery == "other_gateway":
        other = cmd(9, "remove", "bedroom/button").model_copy(update={"gateway_id": "gw-other"})
        answer = side.answer(other, gateway_id="gw-other")
    elif forgery == "unsigned":
        answer = side.answer(remove).model_copy(update={"commands_sig": None})
    else:
        signed = side.answer(cmd(9, "move", "bedroom/button", room="kitchen"))
        answer = signed.model_copy(update={"commands": side.answer(remove).commands})
    with caplog.at_level(logging.ERROR, logger="trygg.gateway.security"):
        await side.control.heartbeat_answered(HeartbeatExtras(), answer)
    assert side.devices() == [BUTTON]
    assert (await side.control.heartbeat_extras()).command_results == ()
    assert any("device commands" in r.message for r in caplog.records)


async def test_the_inventory_is_sent_when_it_changed_and_every_quarter_hour(
    side: Side, clock: FakeClock
) -> None:
    first = await side.control.heartbeat_extras()
    assert first.inventory is not None
    (button,) = first.inventory.devices
    assert (button.name, button.room, button.allow_listed, button.status) == (
        "bedroom/button",
        "bedroom",
        True,
        "pending",
    )
    await side.control.heartbeat_answered(first, side.answer(digest=first.inventory.digest))
    assert (await side.control.heartbeat_extras()).inventory is None

    await side.control.apply_commands([cmd(1, "move", "bedroom/button", room="kitchen")])
    moved = await side.control.heartbeat_extras()
    assert moved.inventory is not None and moved.inventory.devices[0].room == "kitchen"
    await side.control.heartbeat_answered(moved, side.answer(digest=moved.inventory.digest))
    assert (await side.control.heartbeat_extras()).inventory is None
    clock.advance(15 * 60)
    assert (await side.control.heartbeat_extras()).inventory is not None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b'{"request_id": "short"}',
        b'{"request_id": 12345678}',
        b'{"request_id": "abcdefgh1234", "timeout_s": "soon"}',
        b"{" * 2000,
    ],
)
def test_unusable_test_alarm_requests_are_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_test_request(payload)


def test_a_test_alarm_waits_a_bounded_time_for_its_receipt() -> None:
    assert parse_test_request(b'{"request_id": "abcdefgh1234"}').receipt_timeout_s == 30
    long = parse_test_request(b'{"request_id": "abcdefgh1234", "timeout_s": 100000}')
    assert long.receipt_timeout_s == 120


async def test_test_alarm_without_a_running_daemon_says_so(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = gateway_config(tmp_path, mosquitto)
    lines: list[str] = []
    with pytest.raises(BridgeError, match="is 'trygg gateway run' running"):
        await request_test_alarm(config, lines.append, committed_timeout_s=0.5)
    assert lines == []


ORIGINAL_HEARTBEAT = frozenset(
    {
        "v",
        "gateway_id",
        "boot_id",
        "sent_at",
        "outbox_depth",
        "alarms_queued",
        "oldest_queued_age_s",
    }
)


async def test_an_older_centre_that_refuses_the_report_still_gets_its_heartbeats(
    tmp_path: Path,
    open_outbox: OpenOutbox,
    centre: LocalCentre,
    gateway_key: Ed25519PrivateKey,
    clock: FakeClock,
) -> None:
    centre.enrol_directly(gateway_key)
    centre.heartbeat_fields = ORIGINAL_HEARTBEAT
    config = GatewayConfig(state_dir=tmp_path, devices=[BUTTON])
    save_config(config)
    outbox = await open_outbox(migrations=ingest_state.MIGRATIONS)
    pipeline = IngestPipeline(outbox, PROFILES, config.devices, clock)
    await pipeline.start()
    enrolment = enrolment_for(centre)
    uplink = Uplink(outbox, enrolment, gateway_key, UplinkConfig(request_timeout_s=5), clock=clock)
    control = InstallerControl(config, outbox, uplink, pipeline, enrolment, PROFILES, clock)
    await control.start()
    try:
        assert await uplink.send_heartbeat() is not None
        assert [b.inventory for b in centre.heartbeats] == [None]  # sent again, plain
        clock.advance(60)
        assert await uplink.send_heartbeat() is not None
        assert len(centre.heartbeats) == 2

        centre.heartbeat_fields = None  # the centre is upgraded; an hour later the report goes
        clock.advance(3600)
        assert await uplink.send_heartbeat() is not None
        last = centre.heartbeats[-1].inventory
        assert last is not None and [d.name for d in last.devices] == ["bedroom/button"]
    finally:
        await uplink.aclose()


def test_a_big_network_is_cut_to_fit_the_heartbeat_allow_listed_devices_first() -> None:
    strangers = [
        DeviceRecord(
            ieee=f"0x00158d00{n:08x}",
            friendly_name=f"0x00158d00{n:08x}",
            status="unknown",
            match="no_profile",
            reason="no Trygg profile for " + "x" * 180,
            profile=None,
            allowed_name=None,
            allowed_profile=None,
            in_network=True,
            interview="successful",
        )
        for n in range(300)
    ]
    config = GatewayConfig(state_dir=Path("/state"), devices=[BUTTON])
    inventory = build_inventory(strangers, config, START)
    assert inventory.truncated
    assert inventory.devices[0].name == "bedroom/button" and inventory.devices[0].allow_listed
    beat = Heartbeat(
        gateway_id="gw-test",
        boot_id="boot-1",
        sent_at="2026-11-22T12:00:00.000Z",
        outbox_depth=0,
        alarms_queued=0,
        oldest_queued_age_s=0,
        inventory=inventory,
    )
    assert len(canonical_json(beat.to_wire())) < 34 * 1024  # the centre takes 64 KiB
    # The digest covers the whole network, not only what fitted.
    fewer = build_inventory(strangers[:-1], config, START)
    assert fewer.digest != inventory.digest
