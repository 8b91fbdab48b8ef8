"""Generated payloads for every shipped profile: missing, extra, wrong-typed, out-of-range
fields, huge strings and nested junk.

Whatever arrives, ``evaluate`` returns or raises Z2mParseError, never emits a float, keeps
a state it would accept again, and raises events only from values that pass their reading;
``device_health`` never raises; and junk beside a valid alarm value never costs the alarm.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from drivers.mqtt.zigbee2mqtt import Z2mParseError
from firmware_profiles.loader import load_profiles
from firmware_profiles.rules import (
    HIGH,
    LOW,
    RejectReason,
    device_health,
    evaluate,
    read_value,
    remembered_state,
)
from firmware_profiles.schema import (
    ActionRule,
    AnyReading,
    AnyRule,
    BinaryReading,
    EdgeRule,
    EnumReading,
    EnumRule,
    NumericReading,
    Profile,
    TextReading,
    ThresholdRule,
)
from trygg.wire.canonical import canonical_json
from trygg.wire.clock import parse_ts

PROFILES = sorted(load_profiles().values(), key=lambda p: p.id)
NOW = parse_ts("2026-11-22T08:00:00Z")
EXTRA_KEYS = ["last_seen", "power_outage_count", "update", "x", "", "Battery", "linkquality "]

huge_strings = st.builds(lambda c, n: c * n, st.characters(), st.integers(65, 70_000))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=12)
    | huge_strings
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def valid(reading: AnyReading) -> st.SearchStrategy[Any]:
    """Values a device could really send for ``reading``."""
    if isinstance(reading, BinaryReading):
        return st.booleans()
    if isinstance(reading, EnumReading):
        return st.sampled_from(reading.values)
    if isinstance(reading, TextReading):
        return st.text(max_size=reading.max_length)
    assert isinstance(reading, NumericReading)
    low = reading.minimum if reading.minimum is not None else Decimal(-1000)
    high = reading.maximum if reading.maximum is not None else Decimal(100_000)
    low, high = low / reading.scale, high / reading.scale
    low, high = min(low, high), max(low, high)
    integers = st.integers(math.ceil(low), math.floor(high))
    if reading.integer:
        return integers
    return integers | st.decimals(low, high, places=2).map(float)


def payloads(profile: Profile, *, without: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    # Rule properties come up more often, and mostly valid, so that events are raised too.
    rule_props = [r.prop for r in profile.events] * 3
    keys = [k for k in (*profile.readings_by_property, *rule_props, *EXTRA_KEYS) if k != without]

    def entry(key: str) -> st.SearchStrategy[tuple[str, Any]]:
        reading = profile.reading(key)
        values = junk if reading is None else st.one_of(valid(reading), valid(reading), junk)
        return st.tuples(st.just(key), values)

    pairs = st.lists(st.sampled_from(keys).flatmap(entry), max_size=12)
    return pairs.map(dict)


def states(profile: Profile) -> st.SearchStrategy[dict[str, Any]]:
    """A remembered state: a real one, or what a damaged database might hold."""
    real: dict[str, st.SearchStrategy[Any]] = {}
    for rule in profile.events:
        reading = profile.reading(rule.prop)
        if isinstance(rule, ThresholdRule):
            real[rule.prop] = st.sampled_from([HIGH, LOW])
        elif isinstance(rule, EdgeRule | EnumRule) and reading is not None:
            real[rule.prop] = valid(reading)
    good = st.fixed_dictionaries({}, optional=real)
    return good | st.dictionaries(st.sampled_from([*real, "x"]), junk, max_size=4)


def profile_and(
    make: Any,
) -> st.SearchStrategy[tuple[Profile, dict[str, Any], dict[str, Any]]]:
    return st.sampled_from(PROFILES).flatmap(lambda p: st.tuples(st.just(p), states(p), make(p)))


def no_floats(value: object) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(no_floats(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(no_floats(v) for v in value)
    return True


def fires(rule: AnyRule, raw: object, event_type: str) -> bool:
    """Does ``raw`` meet the condition under which ``rule`` raises ``event_type``?"""
    if isinstance(rule, ActionRule | EnumRule):
        return raw in rule.values
    if isinstance(rule, EdgeRule):
        return raw is rule.to
    assert isinstance(raw, int | float) and not isinstance(raw, bool)
    number = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    if event_type == rule.type:
        return number > rule.above
    return number < rule.clear_below


@settings(max_examples=250, deadline=None)
@given(profile_and(payloads), st.booleans())
def test_evaluate_returns_or_refuses_and_never_invents(
    case: tuple[Profile, dict[str, Any], dict[str, Any]], retained: bool
) -> None:
    profile, previous, message = case
    try:
        result = evaluate(profile, previous, message, NOW, retained=retained)
    except Z2mParseError as refused:
        event("refused")
        assert refused.reason
        assert len(refused.reason) < 2000
        return
    event("raised" if result.drafts else "rejected" if result.rejected else "quiet")
    stored = json.loads(json.dumps(result.state))
    assert stored == result.state
    assert all(isinstance(v, bool | str) for v in result.state.values())
    assert set(result.state) <= profile.state_properties
    assert remembered_state(profile, result.state) == result.state
    for rejection in result.rejected:
        reading = profile.reading(rejection.prop)
        assert reading is not None and rejection.prop in message
        assert isinstance(read_value(reading, message[rejection.prop]), RejectReason)
    rule_types = {r.type: r for r in profile.events} | {
        r.clear_type: r for r in profile.events if isinstance(r, ThresholdRule) and r.clear_type
    }
    for draft in result.drafts:
        assert no_floats(draft.data)
        canonical_json(draft.data)
        rule = rule_types[draft.type]
        raw = message[rule.prop]
        reading = profile.reading(rule.prop)
        assert reading is not None
        assert not isinstance(read_value(reading, raw), RejectReason), draft.type
        assert fires(rule, raw, draft.type), draft.type
        if isinstance(rule, ActionRule):
            assert not retained


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PROFILES).flatmap(lambda p: st.tuples(st.just(p), payloads(p))))
def test_device_health_never_raises_and_stays_in_range(
    case: tuple[Profile, dict[str, Any]],
) -> None:
    profile, message = case
    health = device_health(profile, message)
    if health.battery_percent is not None:
        assert Decimal(0) <= health.battery_percent <= Decimal(100)
    if health.linkquality is not None:
        assert isinstance(health.linkquality, int) and 0 <= health.linkquality <= 255
        assert health.link_poor is (health.linkquality < profile.supervision.linkquality_poor_below)
    else:
        assert health.link_poor is None
    for flag in (health.battery_low, health.tamper):
        assert flag is None or isinstance(flag, bool)


ALARM_RULES = [
    (profile, rule)
    for profile in PROFILES
    for rule in profile.events
    if rule.event_class == "alarm"
]


def _alarm_case(pair: tuple[Profile, AnyRule]) -> st.SearchStrategy[Any]:
    profile, rule = pair
    trigger: st.SearchStrategy[Any]
    before: st.SearchStrategy[dict[str, Any]]
    if isinstance(rule, ActionRule):
        trigger, before = st.sampled_from(sorted(rule.values)), st.just({})
    elif isinstance(rule, EdgeRule):
        trigger, before = st.just(rule.to), st.sampled_from([{}, {rule.prop: not rule.to}])
    else:
        assert isinstance(rule, EnumRule)
        reading = profile.reading(rule.prop)
        assert isinstance(reading, EnumReading)
        outside = [{rule.prop: v} for v in reading.values if v not in rule.values]
        trigger, before = st.sampled_from(sorted(rule.values)), st.sampled_from([{}, *outside])
    return st.tuples(st.just(pair), before, trigger, payloads(profile, without=rule.prop))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ALARM_RULES).flatmap(_alarm_case))
def test_junk_beside_a_valid_alarm_value_never_costs_the_alarm(case: Any) -> None:
    (profile, rule), before, trigger, rest = case
    message = {**rest, rule.prop: trigger}
    result = evaluate(profile, before, message, NOW)
    assert rule.type in [d.type for d in result.drafts]
    (alarm,) = [d for d in result.drafts if d.type == rule.type]
    assert alarm.priority <= 2 and alarm.data[rule.prop] == trigger
    canonical_json(alarm.data)
