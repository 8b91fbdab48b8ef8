"""Each shipped profile against payloads as Zigbee2MQTT publishes them (``payloads/``).

One file per device holds sequences of messages with the events each must raise. State is
carried between steps the way the pipeline does it, through JSON (as it is stored), so a
state value that would not survive the database fails here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.mqtt.zigbee2mqtt import Z2mParseError, parse_bridge_devices, parse_state
from firmware_profiles.loader import load_profiles
from firmware_profiles.rules import device_health, evaluate, signable_decimal
from firmware_profiles.schema import profiles_matching
from trygg.wire.canonical import canonical_json
from trygg.wire.clock import parse_ts

PAYLOADS = Path(__file__).parent / "payloads"
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PROFILES = load_profiles()


@dataclass(frozen=True)
class Sequence:
    profile_id: str
    name: str
    steps: list[dict[str, Any]]


def _sequences() -> list[Sequence]:
    found = []
    for path in sorted(PAYLOADS.glob("*.json")):
        if path.name == "bridge_devices.json":
            continue
        recorded = json.loads(path.read_text(encoding="utf-8"))
        for sequence in recorded["sequences"]:
            found.append(Sequence(recorded["profile"], sequence["name"], sequence["steps"]))
    return found


SEQUENCES = _sequences()


def test_every_shipped_profile_has_recorded_sequences() -> None:
    assert {s.profile_id for s in SEQUENCES} == set(PROFILES)


def _as_published(message: dict[str, Any]) -> dict[str, Any]:
    """Through the same bytes and parser the pipeline uses."""
    return parse_state(json.dumps(message).encode())


@pytest.mark.parametrize("sequence", SEQUENCES, ids=lambda s: f"{s.profile_id}: {s.name}")
def test_recorded_sequence(sequence: Sequence) -> None:
    profile = PROFILES[sequence.profile_id]
    state: dict[str, Any] = {}
    for number, step in enumerate(sequence.steps):
        where = f"step {number} ({step.get('note', '')})"
        message = _as_published(step["message"])
        retained = bool(step.get("retained", False))
        if "bad_payload" in step:
            with pytest.raises(Z2mParseError) as refused:
                evaluate(profile, state, message, NOW, retained=retained)
            assert refused.value.reason == step["bad_payload"], where
            continue
        result = evaluate(profile, state, message, NOW, retained=retained)
        got = [
            {
                "type": d.type,
                "class": d.event_class,
                "priority": d.priority,
                "vkp_alert_code": d.vkp_alert_code,
            }
            for d in result.drafts
        ]
        expected = [
            {k: e[k] for k in ("type", "class", "priority", "vkp_alert_code")}
            for e in step["events"]
        ]
        assert got == expected, where
        for draft, event in zip(result.drafts, step["events"], strict=True):
            canonical_json(draft.data)  # signable: no floats anywhere
            if "data" in event:
                assert draft.data == event["data"], where
            assert draft.occurred_at == parse_ts(event.get("occurred_at", "2026-11-22T08:00:00Z"))
        assert sorted(r.prop for r in result.rejected) == sorted(step.get("rejected", [])), where
        if "health" in step:
            health = device_health(profile, message)
            battery = health.battery_percent
            assert {
                "battery_percent": None if battery is None else signable_decimal(battery),
                "battery_low": health.battery_low,
                "linkquality": health.linkquality,
                "link_poor": health.link_poor,
                "tamper": health.tamper,
            } == step["health"], where
        state = json.loads(json.dumps(result.state))


BRIDGE_DEVICES = (PAYLOADS / "bridge_devices.json").read_bytes()
EXPECTED_MATCH = {
    "bedroom/button": "aqara.WXKG11LM",
    "hall/door": "aqara.MCCGQ11LM",
    "living/motion": "aqara.RTCGQ11LM",
    "bathroom/leak": "aqara.SJCGQ11LM",
    "kitchen/smoke": "heiman.HS1SA",
    "bedroom/bed": "aqara.DJT11LM",
    "bedroom/radar": "tuya.MIR-HE200-TY_fall",
    "kitchen/stove": "tuya.TS011F_plug_1",
    "0xa4c13899aabbccdd": None,  # unsupported by Z2M: a TS0601 nobody knows
    "0x00158d0001e2f3a4": None,  # supported by Z2M, but no Trygg profile
}


def test_bridge_devices_dump_matches_each_kit_device_to_one_profile() -> None:
    raw = {e["ieee_address"]: e for e in json.loads(BRIDGE_DEVICES)}
    devices = [d for d in parse_bridge_devices(BRIDGE_DEVICES) if d.type != "Coordinator"]
    matched: dict[str, str | None] = {}
    for device in devices:
        found = profiles_matching(
            PROFILES.values(),
            model=device.model,
            vendor=device.vendor,
            model_id=device.model_id,
            manufacturer=raw[device.ieee].get("manufacturer"),
        )
        assert len(found) <= 1, device.friendly_name
        matched[device.friendly_name] = found[0].id if found else None
    assert matched == EXPECTED_MATCH


def test_without_a_definition_only_the_manufacturer_name_tells_tuya_ids_apart() -> None:
    def match(model_id: str, manufacturer: str) -> list[str]:
        found = profiles_matching(
            PROFILES.values(),
            model=None,
            vendor=None,
            model_id=model_id,
            manufacturer=manufacturer,
        )
        return [p.id for p in found]

    assert match("TS0601", "_TZE200_lu01t0zl") == ["tuya.MIR-HE200-TY_fall"]
    assert match("TS0601", "_TZE204_unknown0") == []
    assert match("TS011F", "_TZ3000_cehuw1lw") == ["tuya.TS011F_plug_1"]
    assert match("TS011F", "_TZ3000_nometering") == []
    assert match("lumi.sensor_wleak.aq1", "LUMI") == ["aqara.SJCGQ11LM"]
