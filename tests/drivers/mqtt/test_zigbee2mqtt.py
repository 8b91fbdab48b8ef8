"""Zigbee2MQTT topic and payload parsing, from payloads recorded in ``payloads/``."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.mqtt.zigbee2mqtt import (
    MAX_STATE_BYTES,
    Z2mParseError,
    Z2mTopic,
    Z2mTopicKind,
    classify,
    parse_availability,
    parse_bridge_devices,
    parse_bridge_event,
    parse_bridge_state,
    parse_state,
    signable_value,
)
from firmware_profiles.loader import load_profiles
from firmware_profiles.rules import evaluate
from trygg.wire.canonical import canonical_json

PAYLOADS = Path(__file__).parent / "payloads"
K = Z2mTopicKind


def recorded(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("zigbee2mqtt/bedroom_button", Z2mTopic(K.DEVICE_STATE, "bedroom_button")),
        ("zigbee2mqtt/bedroom/button", Z2mTopic(K.DEVICE_STATE, "bedroom/button")),
        ("zigbee2mqtt/0x00158d0001a2b3c4", Z2mTopic(K.DEVICE_STATE, "0x00158d0001a2b3c4")),
        ("zigbee2mqtt/hall/door/availability", Z2mTopic(K.DEVICE_AVAILABILITY, "hall/door")),
        ("zigbee2mqtt/door/availability", Z2mTopic(K.DEVICE_AVAILABILITY, "door")),
        ("zigbee2mqtt/hall/plug/set", Z2mTopic(K.DEVICE_COMMAND, "hall/plug")),
        ("zigbee2mqtt/hall/plug/set/state", Z2mTopic(K.DEVICE_COMMAND, "hall/plug")),
        ("zigbee2mqtt/plug/get", Z2mTopic(K.DEVICE_COMMAND, "plug")),
        ("zigbee2mqtt/button/action", Z2mTopic(K.DEVICE_LEGACY_ACTION, "button")),
        ("zigbee2mqtt/bridge/state", Z2mTopic(K.BRIDGE_STATE)),
        ("zigbee2mqtt/bridge/devices", Z2mTopic(K.BRIDGE_DEVICES)),
        ("zigbee2mqtt/bridge/event", Z2mTopic(K.BRIDGE_EVENT)),
        ("zigbee2mqtt/bridge/info", Z2mTopic(K.BRIDGE_OTHER)),
        ("zigbee2mqtt/bridge/logging", Z2mTopic(K.BRIDGE_OTHER)),
        ("zigbee2mqtt/bridge/response/permit_join", Z2mTopic(K.BRIDGE_OTHER)),
        ("zigbee2mqtt/bridge", Z2mTopic(K.BRIDGE_OTHER)),
        ("zigbee2mqtt", Z2mTopic(K.FOREIGN)),
        ("zigbee2mqtt/", Z2mTopic(K.FOREIGN)),
        ("zigbee2mqttx/door", Z2mTopic(K.FOREIGN)),
        ("homeassistant/sensor/door/config", Z2mTopic(K.FOREIGN)),
        ("zigbee2mqtt//door", Z2mTopic(K.FOREIGN)),
        ("zigbee2mqtt/door/", Z2mTopic(K.FOREIGN)),
        ("zigbee2mqtt/availability", Z2mTopic(K.DEVICE_STATE, "availability")),
    ],
)
def test_classify(topic: str, expected: Z2mTopic) -> None:
    assert classify("zigbee2mqtt", topic) == expected


def test_classify_honours_a_configured_base_topic() -> None:
    assert classify("home/z2m", "home/z2m/door") == Z2mTopic(K.DEVICE_STATE, "door")
    assert classify("home/z2m", "zigbee2mqtt/door").kind is K.FOREIGN


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("availability_v2_online.json", True),
        ("availability_v2_offline.json", False),
        ("availability_v1_online.txt", True),
        ("availability_v1_offline.txt", False),
    ],
)
def test_availability_in_both_formats(name: str, expected: bool) -> None:
    assert parse_availability(recorded(name)) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bridge_state_v2_online.json", True),
        ("bridge_state_v2_offline.json", False),
        ("bridge_state_v1_offline.txt", False),
    ],
)
def test_bridge_state_in_both_formats(name: str, expected: bool) -> None:
    assert parse_bridge_state(recorded(name)) is expected


@pytest.mark.parametrize(
    "payload",
    [b"", b"maybe", b'{"state":"sleeping"}', b'{"state":true}', b"[]", b"x" * 2000],
)
def test_bad_availability_is_refused(payload: bytes) -> None:
    with pytest.raises(Z2mParseError):
        parse_availability(payload)


def test_state_of_a_door_sensor() -> None:
    state = parse_state(recorded("mccgq11lm_open.json"))
    assert state["contact"] is False
    assert state["battery"] == 100


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad_duplicate_keys.json", "duplicate key"),
        ("bad_not_object.json", "expected a JSON object"),
        ("bad_truncated.json", "malformed JSON"),
        ("bad_nan.json", "NaN is not JSON"),
    ],
)
def test_bad_state_payloads_are_refused_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(Z2mParseError) as caught:
        parse_state(recorded(name))
    assert reason in caught.value.reason


def test_oversized_and_empty_state_is_refused() -> None:
    with pytest.raises(Z2mParseError, match="exceeds"):
        parse_state(b'{"a":"' + b"x" * MAX_STATE_BYTES + b'"}')
    with pytest.raises(Z2mParseError, match="empty"):
        parse_state(b"")


def test_error_reasons_do_not_echo_payload_contents() -> None:
    with pytest.raises(Z2mParseError) as caught:
        parse_state(b'{"note":"12345678901 Kari Nordmann"')
    assert "Nordmann" not in caught.value.reason


def test_bridge_devices_listing() -> None:
    devices = {d.friendly_name: d for d in parse_bridge_devices(recorded("bridge_devices.json"))}
    assert set(devices) == {"Coordinator", "bedroom/button", "hall/door", "0x00158d0009a1b2c3"}
    door = devices["hall/door"]
    assert (door.ieee, door.model, door.vendor, door.model_id) == (
        "0x00158d000451f2a7",
        "MCCGQ11LM",
        "Aqara",
        "lumi.sensor_magnet.aq2",
    )
    assert door.supported and door.interview_completed
    unknown = devices["0x00158d0009a1b2c3"]
    assert unknown.model is None and not unknown.supported


@pytest.mark.parametrize(
    "payload", [b"{}", b'{"devices":[]}', b"[] , 1", b'[], "devices": []', b"", b"[1,"]
)
def test_bridge_devices_refuses_what_is_not_one_array(payload: bytes) -> None:
    with pytest.raises(Z2mParseError):
        parse_bridge_devices(payload)


def test_bridge_events() -> None:
    joined = parse_bridge_event(recorded("bridge_event_joined.json"))
    assert (joined.type, joined.ieee) == ("device_joined", "0x00158d0009a1b2c3")
    interview = parse_bridge_event(recorded("bridge_event_interview.json"))
    assert (interview.type, interview.friendly_name, interview.status) == (
        "device_interview",
        "hall/door",
        "successful",
    )
    with pytest.raises(Z2mParseError):
        parse_bridge_event(b'{"data":{}}')


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (100, 100),
        (True, True),
        (21.5, "21.5"),
        (0.1, "0.1"),
        (99.0, "99.0"),
        (-3.25, "-3.25"),
        (1e16, "1E+16"),
        (2**60, str(2**60)),
        ("single", "single"),
        (float("inf"), None),
        (float("nan"), None),
        ("x" * 65, None),
        ({"a": 1}, None),
        ([1], None),
        (None, None),
    ],
)
def test_signable_values_never_carry_floats(value: object, expected: object) -> None:
    assert signable_value(value) == expected


# Recorded payload → shipped profile → the events a user would see.
RECORDED_THROUGH_PROFILES = [
    ("aqara.WXKG11LM", {}, "wxkg11lm_single.json", ["alarm.button"]),
    ("aqara.WXKG11LM", {}, "wxkg11lm_double.json", ["alarm.button"]),
    ("aqara.WXKG11LM", {}, "wxkg11lm_hold.json", ["alarm.button"]),
    ("aqara.WXKG11LM", {}, "wxkg11lm_release.json", []),
    ("aqara.WXKG11LM", {}, "wxkg11lm_triple.json", []),
    ("aqara.WXKG11LM", {}, "wxkg11lm_cleared.json", []),
    ("aqara.WXKG11LM", {}, "wxkg11lm_checkin.json", []),
    ("aqara.MCCGQ11LM", {"contact": True}, "mccgq11lm_open.json", ["activity.door_opened"]),
    ("aqara.MCCGQ11LM", {"contact": False}, "mccgq11lm_closed.json", ["activity.door_closed"]),
    ("aqara.MCCGQ11LM", {"contact": False}, "mccgq11lm_open.json", []),
    ("aqara.MCCGQ11LM", {}, "mccgq11lm_open.json", []),
]


@pytest.mark.parametrize(("profile_id", "before", "name", "types"), RECORDED_THROUGH_PROFILES)
def test_recorded_payloads_raise_the_right_events(
    profile_id: str, before: dict[str, bool], name: str, types: list[str]
) -> None:
    profile = load_profiles()[profile_id]
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    result = evaluate(profile, before, parse_state(recorded(name)), now)
    assert [d.type for d in result.drafts] == types
    for draft in result.drafts:
        canonical_json(draft.data)  # signable: no floats anywhere


def test_door_payload_with_a_fractional_battery_and_last_seen() -> None:
    profile = load_profiles()["aqara.MCCGQ11LM"]
    received = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    message = parse_state(recorded("mccgq11lm_open_last_seen.json"))
    (draft,) = evaluate(profile, {"contact": True}, message, received).drafts
    assert draft.vkp_alert_code == "4.15"
    assert draft.data == {"contact": False, "battery": "91.5", "voltage": 2995, "linkquality": 102}
    assert draft.occurred_at == datetime(2026, 11, 22, 7, 14, 3, 250000, tzinfo=UTC)


def test_a_contact_that_is_not_a_boolean_is_a_bad_payload() -> None:
    profile = load_profiles()["aqara.MCCGQ11LM"]
    message = parse_state(recorded("mccgq11lm_contact_not_bool.json"))
    with pytest.raises(Z2mParseError, match="contact is not a boolean"):
        evaluate(profile, {"contact": True}, message, datetime.now(UTC))


@given(st.binary(max_size=512))
def test_parsers_raise_only_z2m_parse_error(payload: bytes) -> None:
    for parse in (parse_state, parse_availability, parse_bridge_devices, parse_bridge_event):
        with contextlib.suppress(Z2mParseError):
            parse(payload)


json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
).map(lambda v: repr(v).replace("'", '"').encode())


@given(json_text)
def test_parsers_survive_json_like_text(payload: bytes) -> None:
    for parse in (parse_state, parse_availability, parse_bridge_devices, parse_bridge_event):
        with contextlib.suppress(Z2mParseError):
            parse(payload)


@given(st.text(max_size=40), st.text(max_size=60))
def test_classify_never_raises(base: str, topic: str) -> None:
    result = classify(base or "zigbee2mqtt", topic)
    if result.device is not None:
        assert topic.endswith(result.device) or result.device in topic
