"""The event envelope: what both sides accept, and what they refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from trygg.wire.canonical import CanonicalJsonError, canonical_json, parse_json_object
from trygg.wire.clock import format_ts, parse_ts
from trygg.wire.envelope import DeviceRef, Event, sign_event, verify_event
from trygg.wire.ids import is_uuid7, uuid7
from trygg.wire.jws import JwsError, key_id

KEY = Ed25519PrivateKey.generate()
KID = key_id(KEY.public_key())


def make_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": str(uuid7()),
        "gateway_id": "gw-0001",
        "boot_id": "b0",
        "seq": 1,
        "occurred_at": "2026-11-22T08:30:00.123Z",
        "recorded_at": "2026-11-22T08:30:00.125Z",
        "class": "alarm",
        "type": "alarm.button",
        "priority": 1,
        "device": DeviceRef(id="hall/button", profile="aqara.WXKG11LM", room="hall"),
        "data": {"action": "single", "battery": 100},
        "vkp_alert_code": "3",
    }
    fields.update(overrides)
    return Event.model_validate(fields)


def test_signed_event_verifies_after_transit_reformatting() -> None:
    signed = sign_event(make_event(), KEY, KID)
    # The JSON may be re-serialised with other spacing and member order on the way.
    pretty = json.dumps(signed.to_wire()["event"], indent=2, sort_keys=False)
    received = parse_json_object(pretty)
    again = verify_event(received, signed.sig, KEY.public_key())
    assert again.event == signed.event
    assert again.body == signed.body


def test_wire_uses_class_not_the_python_name() -> None:
    wire = make_event().to_wire()
    assert wire["class"] == "alarm" and "event_class" not in wire


def test_tampered_event_is_refused() -> None:
    signed = sign_event(make_event(), KEY, KID)
    tampered = dict(signed.to_wire()["event"], seq=2)
    with pytest.raises(JwsError):
        verify_event(tampered, signed.sig, KEY.public_key())


def test_signature_from_another_key_is_refused() -> None:
    other = Ed25519PrivateKey.generate()
    signed = sign_event(make_event(), other, KID)
    with pytest.raises(JwsError):
        verify_event(signed.to_wire()["event"], signed.sig, KEY.public_key())


def test_float_in_data_is_refused_before_signing() -> None:
    with pytest.raises(ValidationError, match="floats are not allowed"):
        make_event(data={"spo2": 97.5})


def test_float_received_is_refused_before_verifying() -> None:
    signed = sign_event(make_event(), KEY, KID)
    raw = dict(signed.to_wire()["event"], data={"battery": 100.0})
    with pytest.raises(CanonicalJsonError):
        verify_event(raw, signed.sig, KEY.public_key())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"event_id": "0b5d2c1e-7f3a-4c59-9d1e-2a4b6c8d0e1f"}, "UUIDv7"),
        ({"type": "technical.battery_low"}, "does not belong"),
        ({"type": "Alarm Button"}, "dotted"),
        ({"seq": 0}, "greater than or equal"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"vkp_alert_code": "9.9"}, "vkp"),
        ({"class": "gossip"}, "class"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_invalid_envelopes_name_their_fault(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_event(**overrides)


def test_duplicate_keys_and_nan_are_not_json() -> None:
    with pytest.raises(CanonicalJsonError, match="duplicate"):
        parse_json_object('{"seq": 1, "seq": 2}')
    with pytest.raises(CanonicalJsonError):
        parse_json_object('{"x": NaN}')
    with pytest.raises(CanonicalJsonError, match="object"):
        parse_json_object("[1, 2]")
    with pytest.raises(CanonicalJsonError, match="malformed"):
        parse_json_object(b"{\x00")


def test_uuid7_is_time_ordered_and_versioned() -> None:
    first, second = uuid7(1_700_000_000_000), uuid7(1_700_000_000_001)
    assert first < second
    assert is_uuid7(str(first)) and not is_uuid7(str(first).upper())


def test_timestamps_are_utc_milliseconds() -> None:
    moment = datetime(2026, 11, 22, 8, 30, 0, 123456, tzinfo=UTC)
    assert format_ts(moment) == "2026-11-22T08:30:00.123Z"
    assert parse_ts("2026-11-22T09:30:00.123+01:00") == moment.replace(microsecond=123000)


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), json_value, max_size=6))
def test_canonical_form_ignores_member_order(value: dict[str, Any]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_json(value) == canonical_json(reordered)
    assert json.loads(canonical_json(value)) == value


@given(st.dictionaries(st.text(max_size=10), json_value, max_size=6))
def test_any_signable_data_round_trips_through_sign_and_verify(data: dict[str, Any]) -> None:
    signed = sign_event(make_event(data=data), KEY, KID)
    wire = json.loads(json.dumps(signed.to_wire()))
    assert verify_event(wire["event"], wire["sig"], KEY.public_key()).event.data == data
