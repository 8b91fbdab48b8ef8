"""Profile rules: which messages raise which events, and what state is remembered."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.mqtt.zigbee2mqtt import Z2mParseError
from firmware_profiles.loader import load_profiles
from firmware_profiles.rules import evaluate
from firmware_profiles.schema import Profile
from trygg.wire.canonical import canonical_json

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PROFILES = load_profiles()
BUTTON = PROFILES["aqara.WXKG11LM"]
DOOR = PROFILES["aqara.MCCGQ11LM"]


def run(profile: Profile, messages: list[dict[str, Any]]) -> list[str]:
    """Feed messages in order, carrying state like the pipeline does; the event types."""
    state: dict[str, bool] = {}
    types: list[str] = []
    for message in messages:
        result = evaluate(profile, state, message, NOW)
        state = result.state
        types += [d.type for d in result.drafts]
    return types


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


def test_door_events_carry_vkp_codes_and_class() -> None:
    (opened,) = evaluate(DOOR, {"contact": True}, {"contact": False}, NOW).drafts
    (closed,) = evaluate(DOOR, {"contact": False}, {"contact": True}, NOW).drafts
    assert (opened.event_class, opened.vkp_alert_code, opened.priority) == ("activity", "4.15", 6)
    assert (closed.type, closed.vkp_alert_code) == ("activity.door_closed", "4.16")


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


def test_button_alarm_is_vkp_trygghetsalarm_with_device_health() -> None:
    message = {"action": "single", "battery": 100, "voltage": 3042, "linkquality": 81, "x": 1}
    (draft,) = evaluate(BUTTON, {}, message, NOW).drafts
    assert (draft.event_class, draft.priority, draft.vkp_alert_code) == ("alarm", 1, "3")
    assert draft.data == {"action": "single", "battery": 100, "voltage": 3042, "linkquality": 81}
    assert draft.occurred_at == NOW


def test_odd_device_health_fields_never_cost_the_alarm() -> None:
    message = {"action": "single", "battery": {"x": 1}, "voltage": 3042.5, "linkquality": 1e400}
    (draft,) = evaluate(BUTTON, {}, message, NOW).drafts
    assert draft.data == {"action": "single", "voltage": "3042.5"}
    canonical_json(draft.data)


@pytest.mark.parametrize(
    ("profile", "message", "reason"),
    [
        (BUTTON, {"action": 1}, "action is not a string"),
        (BUTTON, {"action": ["single"]}, "action is not a string"),
        (DOOR, {"contact": "open"}, "contact is not a boolean"),
        (DOOR, {"contact": 0}, "contact is not a boolean"),
    ],
)
def test_wrong_types_are_bad_payloads(
    profile: Profile, message: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Z2mParseError, match=reason):
        evaluate(profile, {"contact": True}, message, NOW)


def test_garbage_in_the_remembered_state_counts_as_unknown() -> None:
    result = evaluate(DOOR, {"contact": "yes", "other": True}, {"contact": False}, NOW)
    assert result.drafts == []
    assert result.state == {"contact": False}


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
        (10**30, NOW),
        (True, NOW),
    ],
)
def test_occurred_at_prefers_a_plausible_last_seen(last_seen: object, expected: datetime) -> None:
    (draft,) = evaluate(BUTTON, {}, {"action": "single", "last_seen": last_seen}, NOW).drafts
    assert draft.occurred_at == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
messages = st.dictionaries(
    st.sampled_from(["action", "contact", "battery", "voltage", "linkquality", "last_seen", "x"]),
    json_values | st.sampled_from(["single", "hold", "", True, False]),
)


@given(st.sampled_from([BUTTON, DOOR]), st.dictionaries(st.text(max_size=8), json_values), messages)
def test_evaluate_raises_only_z2m_parse_error(
    profile: Profile, previous: dict[str, Any], message: dict[str, Any]
) -> None:
    with contextlib.suppress(Z2mParseError):
        result = evaluate(profile, previous, message, NOW)
        for draft in result.drafts:
            canonical_json(draft.data)
        assert set(result.state) <= profile.edge_properties


def test_a_retained_press_is_not_a_new_alarm_but_a_retained_door_state_counts() -> None:
    assert evaluate(BUTTON, {}, {"action": "single"}, NOW, retained=True).drafts == []
    (opened,) = evaluate(DOOR, {"contact": True}, {"contact": False}, NOW, retained=True).drafts
    assert opened.type == "activity.door_opened"
