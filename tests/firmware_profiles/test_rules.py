"""Profile rules: which messages raise which events, what is remembered, what is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from drivers.mqtt.zigbee2mqtt import Z2mParseError
from firmware_profiles.loader import load_profiles
from firmware_profiles.rules import (
    RejectReason,
    device_health,
    evaluate,
    read_value,
    remembered_state,
    signable_decimal,
)
from firmware_profiles.schema import NumericReading, Profile
from trygg.wire.canonical import canonical_json

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PROFILES = load_profiles()
BUTTON = PROFILES["aqara.WXKG11LM"]
DOOR = PROFILES["aqara.MCCGQ11LM"]
SMOKE = PROFILES["heiman.HS1SA"]
RADAR = PROFILES["tuya.MIR-HE200-TY_fall"]
STOVE = PROFILES["tuya.TS011F_plug_1"]
LEAK = PROFILES["aqara.SJCGQ11LM"]


def run(profile: Profile, messages: list[dict[str, Any]], *, retained: bool = False) -> list[str]:
    """Feed messages in order, carrying state through JSON like the pipeline; the types."""
    state: dict[str, Any] = {}
    types: list[str] = []
    for message in messages:
        result = evaluate(profile, state, message, NOW, retained=retained)
        state = json.loads(json.dumps(result.state))
        types += [d.type for d in result.drafts]
    return types


def custom(**changes: Any) -> Profile:
    """A small test profile: a mains numeric sensor with the given readings and events."""
    base: dict[str, Any] = {
        "id": "test.SENSOR",
        "vendor": "Test",
        "model": "SENSOR",
        "transport": "zigbee2mqtt",
        "fingerprint": {"model": "SENSOR", "vendor": "Test", "model_id": "t.sensor"},
        "power_source": "mains",
        "supervision": {"check_in_interval_s": 600, "liveness": "availability"},
    }
    return Profile.model_validate({**base, **changes})


# --- edge and action rules (the first format) ------------------------------------------------


def test_door_first_report_is_remembered_not_raised() -> None:
    result = evaluate(DOOR, {}, {"contact": False, "battery": 100}, NOW)
    assert result.drafts == []
    assert result.state == {"contact": False}


def test_door_sequence_raises_only_on_changes() -> None:
    messages: list[dict[str, Any]] = [
        {"contact": True},  # first report: closed, nothing raised
        {"contact": True, "battery": 99},  # periodic report, unchanged
        {"contact": False},  # opened
        {"battery": 98},  # check-in without contact: state kept
        {"contact": None},  # unknown after a Z2M restart: state kept
        {"contact": False},  # still open
        {"contact": True},  # closed
    ]
    assert run(DOOR, messages) == ["activity.door_opened", "activity.door_closed"]


def test_button_presses_each_raise_an_alarm() -> None:
    messages: list[dict[str, Any]] = [
        {"action": "single"},
        {"action": ""},
        {"action": "single"},
        {"action": "hold"},
        {"action": "release"},
        {"action": None},
        {"battery": 100},
    ]
    assert run(BUTTON, messages) == ["alarm.button"] * 3


def test_odd_device_health_fields_never_cost_the_alarm() -> None:
    message = {"action": "single", "battery": {"x": 1}, "voltage": 3042.5, "linkquality": 1e400}
    result = evaluate(BUTTON, {}, message, NOW)
    (draft,) = result.drafts
    assert draft.data == {"action": "single", "voltage": "3042.5"}
    assert {r.text for r in result.rejected} == {
        "battery is not a number",
        "linkquality is not a number",
    }
    canonical_json(draft.data)


@pytest.mark.parametrize(
    ("profile", "message", "reason"),
    [
        (BUTTON, {"action": 1}, "action is not a string"),
        (BUTTON, {"action": ["single"]}, "action is not a string"),
        (BUTTON, {"action": "explode"}, "action is not one of its listed values"),
        (DOOR, {"contact": "open"}, "contact is not a boolean"),
        (DOOR, {"contact": 0}, "contact is not a boolean"),
        (DOOR, {"battery": -1, "linkquality": 300}, "battery is out of range; linkquality is"),
        (STOVE, {"power": 12.5e9}, "power is out of range"),
    ],
)
def test_a_message_with_nothing_but_bad_values_is_a_bad_payload(
    profile: Profile, message: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Z2mParseError, match=reason):
        evaluate(profile, {"contact": True}, message, NOW)


def test_a_state_change_beside_a_bad_value_is_kept_so_the_next_alarm_is_not_lost() -> None:
    """Smoke cleared in a message with garbage beside it: refusing the whole message would
    leave ``smoke: true`` remembered, and the next fire would not be an edge."""
    cleared = evaluate(SMOKE, {"smoke": True}, {"smoke": False, "battery": 300}, NOW)
    assert cleared.drafts == [] and cleared.state == {"smoke": False}
    assert [r.prop for r in cleared.rejected] == ["battery"]
    (fire,) = evaluate(SMOKE, cleared.state, {"smoke": True}, NOW).drafts
    assert fire.type == "alarm.smoke"


def test_garbage_in_the_remembered_state_counts_as_unknown() -> None:
    previous = {"contact": "yes", "other": True}
    assert remembered_state(DOOR, previous) == {}
    result = evaluate(DOOR, previous, {"contact": False}, NOW)
    assert result.drafts == []
    assert result.state == {"contact": False}
    garbage = {"fall_down_status": "falling", "presence": 1, "tumble_switch": "ON"}
    assert remembered_state(RADAR, garbage) == {"tumble_switch": "ON"}
    assert remembered_state(STOVE, {"power": "medium", "state": "ON"}) == {"state": "ON"}


def test_a_retained_press_is_not_a_new_alarm_but_a_retained_door_state_counts() -> None:
    assert evaluate(BUTTON, {}, {"action": "single"}, NOW, retained=True).drafts == []
    (opened,) = evaluate(DOOR, {"contact": True}, {"contact": False}, NOW, retained=True).drafts
    assert opened.type == "activity.door_opened"


# --- on_first: alarms reported by a device we knew nothing about -------------------------------


@pytest.mark.parametrize(
    ("profile", "message", "alarm"),
    [
        (SMOKE, {"smoke": True}, "alarm.smoke"),
        (LEAK, {"water_leak": True}, "alarm.water_leak"),
        (RADAR, {"fall_down_status": "fall"}, "alarm.fall"),
    ],
)
def test_a_first_report_that_is_an_alarm_raises_unless_retained(
    profile: Profile, message: dict[str, Any], alarm: str
) -> None:
    assert [d.type for d in evaluate(profile, {}, message, NOW).drafts] == [alarm]
    stale = evaluate(profile, {}, message, NOW, retained=True)
    assert stale.drafts == [] and stale.state  # remembered, so the next report is no edge
    assert evaluate(profile, stale.state, message, NOW).drafts == []


# --- enum rules --------------------------------------------------------------------------------


def test_fall_status_raises_once_per_entry_into_fall() -> None:
    statuses = ["none", "maybe_fall", "fall", "fall", "maybe_fall", "fall", "none", "fall"]
    types = run(RADAR, [{"fall_down_status": s} for s in statuses])
    assert types == [
        "activity.fall_suspected",
        "alarm.fall",
        "activity.fall_suspected",
        "alarm.fall",
        "alarm.fall",
    ]


def test_fall_alarm_carries_vkp_fall_and_is_urgent() -> None:
    (draft,) = evaluate(
        RADAR, {"fall_down_status": "none"}, {"fall_down_status": "fall"}, NOW
    ).drafts
    assert (draft.event_class, draft.priority, draft.vkp_alert_code) == ("alarm", 1, "4.1")
    assert draft.data == {"fall_down_status": "fall"}


def test_enum_state_survives_a_restart_as_a_string() -> None:
    first = evaluate(RADAR, {}, {"fall_down_status": "fall", "tumble_switch": "ON"}, NOW)
    stored = json.loads(json.dumps(first.state))
    assert stored == {"fall_down_status": "fall", "tumble_switch": "ON"}
    assert evaluate(RADAR, stored, {"fall_down_status": "fall"}, NOW).drafts == []


# --- threshold rules ---------------------------------------------------------------------------


def test_stove_threshold_has_hysteresis() -> None:
    watts = [0, 150, 60, 150, 99, 19, 25, 101, 100.5, 10]
    types = run(STOVE, [{"power": w} for w in watts])
    assert types == [
        "activity.stove_on",
        "activity.stove_off",
        "activity.stove_on",
        "activity.stove_off",
    ]


def test_stove_limits_are_strict() -> None:
    assert run(STOVE, [{"power": 0}, {"power": 100}, {"power": 100.0}]) == []
    assert run(STOVE, [{"power": 500}, {"power": 20}]) == []
    assert run(STOVE, [{"power": 500}, {"power": 19.99}]) == ["activity.stove_off"]


def test_a_first_value_between_the_limits_counts_as_below() -> None:
    result = evaluate(STOVE, {}, {"power": 50}, NOW)
    assert result.state == {"power": "low"} and result.drafts == []
    (on,) = evaluate(STOVE, result.state, {"power": 500}, NOW).drafts
    assert on.type == "activity.stove_on" and on.data == {"power": 500}


def test_a_threshold_without_clear_type_rearms_silently_and_on_first_raise_counts() -> None:
    heat = custom(
        readings=[
            {"property": "temperature", "kind": "numeric", "unit": "°C", "min": -40, "max": 125}
        ],
        events=[
            {
                "kind": "threshold",
                "property": "temperature",
                "above": 57.5,
                "clear_below": 45,
                "on_first": "raise",
                "type": "alarm.heat",
                "class": "alarm",
                "vkp_alert_code": "4.11",
            }
        ],
    )
    assert run(heat, [{"temperature": 60}]) == ["alarm.heat"]
    assert run(heat, [{"temperature": 60}], retained=True) == []
    temps = [20, 57.5, 57.6, 50, 44.9, 58]
    assert run(heat, [{"temperature": t} for t in temps]) == ["alarm.heat", "alarm.heat"]


def test_threshold_data_is_an_exact_decimal_string() -> None:
    result = evaluate(STOVE, {"power": "low"}, {"power": 1480.3, "state": "ON"}, NOW)
    (on,) = result.drafts
    assert on.data == {"power": "1480.3", "state": "ON"}
    assert result.state == {"power": "high", "state": "ON"}


# --- readings ----------------------------------------------------------------------------------


def reading(**fields: Any) -> NumericReading:
    return NumericReading.model_validate({"kind": "numeric", "property": "x", **fields})


@pytest.mark.parametrize(
    ("fields", "raw", "expected"),
    [
        ({}, 21.5, Decimal("21.5")),
        ({}, 0.1 + 0.2, Decimal("0.30000000000000004")),
        ({"scale": "0.1"}, 215, Decimal("21.5")),
        ({"min": 0, "max": 100}, 100, Decimal(100)),
        ({"min": 0, "max": 100}, 100.01, RejectReason.OUT_OF_RANGE),
        ({"min": 0, "max": 100}, -0.5, RejectReason.OUT_OF_RANGE),
        ({"integer": True}, 3.0, Decimal("3.0")),
        ({"integer": True}, 3.5, RejectReason.OUT_OF_RANGE),
        ({}, 10**16, RejectReason.OUT_OF_RANGE),
        ({}, 1e-12, RejectReason.OUT_OF_RANGE),
        ({}, 0.0, Decimal("0.0")),
        ({}, float("nan"), RejectReason.WRONG_TYPE),
        ({}, float("inf"), RejectReason.WRONG_TYPE),
        ({}, True, RejectReason.WRONG_TYPE),
        ({}, "21.5", RejectReason.WRONG_TYPE),
        ({}, [1], RejectReason.WRONG_TYPE),
    ],
)
def test_numeric_readings(fields: dict[str, Any], raw: object, expected: object) -> None:
    assert read_value(reading(**fields), raw) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal(100), 100),
        (Decimal("100.0"), 100),
        (Decimal("21.50"), "21.5"),
        (Decimal("0.30000000000000004"), "0.30000000000000004"),
        (Decimal("-3.25"), "-3.25"),
        (Decimal("1E+3"), 1000),
        (Decimal("9007199254740993"), "9007199254740993"),
        (Decimal("0.000000001"), "0.000000001"),
    ],
)
def test_signable_decimals_are_exact_and_never_floats(value: Decimal, expected: object) -> None:
    assert signable_decimal(value) == expected


# --- device health -----------------------------------------------------------------------------


def test_health_of_a_leak_sensor_uses_both_battery_signals() -> None:
    health = device_health(LEAK, {"battery": 64, "battery_low": True, "linkquality": 19})
    assert (health.battery_percent, health.battery_low) == (Decimal(64), True)
    assert (health.linkquality, health.link_poor, health.tamper) == (19, True, None)
    assert device_health(LEAK, {"battery": 20, "battery_low": False}).battery_low is True
    assert device_health(LEAK, {"battery": 21, "battery_low": False}).battery_low is False
    assert device_health(LEAK, {"battery": 21}).battery_low is False
    assert device_health(LEAK, {"linkquality": 20}).link_poor is False


def test_health_reports_tamper_where_the_device_has_it() -> None:
    assert device_health(SMOKE, {"tamper": True}).tamper is True
    assert device_health(SMOKE, {"tamper": False}).tamper is False
    assert device_health(DOOR, {"tamper": True}).tamper is None


def test_health_of_a_silent_or_garbled_message_is_unknown_never_an_exception() -> None:
    health = device_health(
        SMOKE, {"battery": "83", "battery_low": 1, "linkquality": 7.5, "tamper": []}
    )
    assert (health.battery_percent, health.battery_low, health.linkquality) == (None, None, None)
    assert (health.link_poor, health.tamper) == (None, None)
    assert {r.prop for r in health.rejected} == {"battery", "battery_low", "linkquality", "tamper"}
    empty = device_health(RADAR, {})
    assert (empty.battery_low, empty.linkquality, empty.rejected) == (None, None, ())


# --- time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_seen", "expected"),
    [
        ("2026-11-22T07:30:00.000Z", datetime(2026, 11, 22, 7, 30, tzinfo=UTC)),
        ("2026-11-22T08:30:00+01:00", datetime(2026, 11, 22, 7, 30, tzinfo=UTC)),
        (
            int(datetime(2026, 11, 22, 7, 0, tzinfo=UTC).timestamp() * 1000),
            NOW - timedelta(hours=1),
        ),
        ("2026-11-22T07:30:00", NOW),  # ISO_8601_local: no zone, unusable
        ("2026-11-22T09:00:00Z", NOW),  # in the future
        ("2026-10-01T09:00:00Z", NOW),  # older than a week
        ("yesterday", NOW),
        ("2" * 10_000, NOW),
        (10**30, NOW),
        (True, NOW),
    ],
)
def test_occurred_at_prefers_a_plausible_last_seen(last_seen: object, expected: datetime) -> None:
    (draft,) = evaluate(BUTTON, {}, {"action": "single", "last_seen": last_seen}, NOW).drafts
    assert draft.occurred_at == expected
