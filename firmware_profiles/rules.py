"""Turn one device message into the events its profile says to raise (pure, no I/O).

Three steps, each a pure function:

1. :func:`read_message` checks every property the profile knows against its reading
   (kind, range, allowed values). A bad value is rejected *for that property only*, with a
   typed reason, so a garbage battery field never costs the alarm riding beside it.
2. :func:`evaluate` runs the rules over the accepted values and the remembered state.
3. :func:`device_health` gives the supervision code battery, link and tamper, validated.

The caller keeps each device's state (``Evaluation.state``: a JSON-safe dict of the last
value of each stateful property, or ``"high"``/``"low"`` for a threshold) and passes it
back in; this module remembers nothing itself, so the pipeline can persist that state in
the same transaction as the events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from drivers.mqtt.zigbee2mqtt import Z2mParseError, signable_value
from firmware_profiles.schema import (
    MAX_TEXT,
    NUMERIC_LIMIT,
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
from trygg.wire.canonical import MAX_SAFE_INTEGER
from trygg.wire.clock import parse_ts
from trygg.wire.envelope import EventClass

MAX_DEVICE_AGE = timedelta(days=7)
"""How far back a device's ``last_seen`` may lie before it is distrusted."""

SMALLEST = Decimal("1e-9")
"""Non-zero readings smaller than this are garbage; their exact text would be huge."""

StateValue = bool | int | str
"""What the remembered per-device state may hold: JSON scalars, never floats."""

ReadingValue = bool | Decimal | str
"""An accepted reading: binary → bool, numeric → exact Decimal, enum/text → str."""

HIGH, LOW = "high", "low"
"""The remembered side of a threshold rule."""


class RejectReason(StrEnum):
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    NOT_ALLOWED = "not_allowed"
    TOO_LONG = "too_long"


_EXPECTED = {"binary": "a boolean", "numeric": "a number", "enum": "a string", "text": "a string"}


@dataclass(frozen=True, slots=True)
class Rejection:
    """One property of one message that was not used; safe to log (no payload content)."""

    prop: str
    reason: RejectReason
    kind: str
    """The kind of reading the value failed (binary, numeric, enum, text)."""

    @property
    def text(self) -> str:
        if self.reason is RejectReason.WRONG_TYPE:
            return f"{self.prop} is not {_EXPECTED.get(self.kind, 'valid')}"
        if self.reason is RejectReason.NOT_ALLOWED:
            return f"{self.prop} is not one of its listed values"
        if self.reason is RejectReason.TOO_LONG:
            return f"{self.prop} is too long"
        return f"{self.prop} is out of range"


@dataclass(frozen=True, slots=True)
class Readings:
    values: dict[str, ReadingValue]
    rejected: tuple[Rejection, ...]


@dataclass(frozen=True, slots=True)
class DraftSpec:
    """An event to raise, before the outbox gives it an id, a sequence number and a device."""

    event_class: EventClass
    type: str
    priority: int
    occurred_at: datetime
    vkp_alert_code: str | None
    data: dict[str, int | bool | str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    drafts: list[DraftSpec]
    state: dict[str, StateValue]
    """The device's remembered values after this message (all of them, not a delta)."""
    rejected: tuple[Rejection, ...] = ()
    """Properties of this message that were refused; the rest was used."""

    @property
    def raises(self) -> bool:
        return bool(self.drafts)


@dataclass(frozen=True, slots=True)
class Health:
    """Device-health fields of one message, validated; ``None`` where not reported."""

    battery_percent: Decimal | None
    battery_low: bool | None
    linkquality: int | None
    link_poor: bool | None
    tamper: bool | None
    rejected: tuple[Rejection, ...] = ()


# --- step 1: readings ---------------------------------------------------------------------


def read_value(reading: AnyReading, raw: object) -> ReadingValue | RejectReason:
    """One payload value checked against its reading (``raw`` must not be ``None``)."""
    if isinstance(reading, BinaryReading):
        return raw if isinstance(raw, bool) else RejectReason.WRONG_TYPE
    if isinstance(reading, NumericReading):
        return _read_number(reading, raw)
    if not isinstance(raw, str):
        return RejectReason.WRONG_TYPE
    if isinstance(reading, EnumReading):
        return raw if raw in reading.values else RejectReason.NOT_ALLOWED
    if isinstance(reading, TextReading) and len(raw) > reading.max_length:
        return RejectReason.TOO_LONG
    return raw


def _read_number(reading: NumericReading, raw: object) -> Decimal | RejectReason:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return RejectReason.WRONG_TYPE
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return RejectReason.WRONG_TYPE
        number = Decimal(repr(raw))
    else:
        if abs(raw) > NUMERIC_LIMIT:
            return RejectReason.OUT_OF_RANGE
        number = Decimal(raw)
    value = number * reading.scale
    if abs(value) > NUMERIC_LIMIT or (value != 0 and abs(value) < SMALLEST):
        return RejectReason.OUT_OF_RANGE
    if reading.integer and value != value.to_integral_value():
        return RejectReason.OUT_OF_RANGE
    if (reading.minimum is not None and value < reading.minimum) or (
        reading.maximum is not None and value > reading.maximum
    ):
        return RejectReason.OUT_OF_RANGE
    return value


def read_message(profile: Profile, message: Mapping[str, Any]) -> Readings:
    """Every property of ``message`` that ``profile`` has a reading for, checked.

    Absent and ``null`` properties are neither values nor rejections (Z2M publishes
    ``null`` for a state it does not know yet, e.g. after its own restart), and neither is
    an empty string for an enum: Z2M clears an event-like ``action`` with ``""``.
    """
    values: dict[str, ReadingValue] = {}
    rejected: list[Rejection] = []
    for prop, reading in profile.readings_by_property.items():
        raw = message.get(prop)
        if raw is None or (raw == "" and isinstance(reading, EnumReading)):
            continue
        result = read_value(reading, raw)
        if isinstance(result, RejectReason):
            rejected.append(Rejection(prop, result, reading.kind))
        else:
            values[prop] = result
    return Readings(values=values, rejected=tuple(rejected))


def signable_decimal(value: Decimal) -> int | str:
    """An exact decimal for a signed event: a safe integer when whole, else its digits."""
    if value == value.to_integral_value() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _signable(value: ReadingValue) -> int | bool | str:
    return signable_decimal(value) if isinstance(value, Decimal) else value


# --- step 2: rules -------------------------------------------------------------------------


def evaluate(
    profile: Profile,
    previous_state: Mapping[str, Any],
    message: Mapping[str, Any],
    received_at: datetime,
    *,
    retained: bool = False,
) -> Evaluation:
    """The events ``message`` raises for a device of ``profile``, and its new state.

    - action rules raise once per message whose value is listed; an empty, null or
      unlisted action raises nothing (Z2M may follow an action with a cleared one);
    - a ``retained`` message (the broker's stored copy, sent on subscribing) raises no
      action and no ``on_first`` event: it is old news, already handled or already lost;
      a change against the remembered state still raises (it happened while we were away);
    - edge, enum and threshold rules raise on a change into their condition (see their
      classes); the first value ever seen is recorded, or raised when ``on_first: raise``;
    - a message without the property, or with ``null``, leaves the remembered value alone;
    - a property whose value fails its reading raises nothing and is listed in
      ``rejected``; the rest of the message is still used.

    Raises Z2mParseError (reason: the rejected properties) only when a message has
    rejected properties and nothing else to keep: no event and no change of state.
    """
    readings = read_message(profile, message)
    occurred_at = occurred_time(message, received_at)
    known = remembered_state(profile, previous_state)
    state: dict[str, StateValue] = dict(known)
    drafts: list[DraftSpec] = []
    for rule in profile.events:
        value = readings.values.get(rule.prop)
        if value is None:
            continue
        for event_type, code in _fired(rule, value, known.get(rule.prop), state, retained):
            drafts.append(
                _draft(profile, rule, event_type, code, value, readings, message, occurred_at)
            )
    if readings.rejected and not drafts and state == known:
        raise Z2mParseError("; ".join(r.text for r in readings.rejected))
    return Evaluation(drafts=drafts, state=state, rejected=readings.rejected)


def _fired(
    rule: AnyRule,
    value: ReadingValue,
    before: StateValue | None,
    state: dict[str, StateValue],
    retained: bool,
) -> list[tuple[str, str | None]]:
    """The (type, VKP code) pairs ``rule`` raises for ``value``; updates ``state``."""
    if isinstance(rule, ActionRule):
        if retained or not isinstance(value, str) or value not in rule.values:
            return []
        return [(rule.type, rule.vkp_alert_code)]
    if isinstance(rule, ThresholdRule):
        return _threshold(rule, value, before, state, retained)
    if isinstance(rule, EdgeRule):
        if not isinstance(value, bool):
            return []
        state[rule.prop] = value
        inside, was_inside = value == rule.to, None if before is None else before == rule.to
    else:
        if not isinstance(value, str):
            return []
        state[rule.prop] = value
        inside, was_inside = value in rule.values, None if before is None else before in rule.values
    if not inside or was_inside:
        return []
    if was_inside is None and (rule.on_first == "record" or retained):
        return []
    return [(rule.type, rule.vkp_alert_code)]


def _threshold(
    rule: ThresholdRule,
    value: ReadingValue,
    before: StateValue | None,
    state: dict[str, StateValue],
    retained: bool,
) -> list[tuple[str, str | None]]:
    if not isinstance(value, Decimal):
        return []
    if value > rule.above:
        side: StateValue = HIGH
    elif value < rule.clear_below or before is None:
        # A first value between the limits is not above them: going above next is a rise.
        side = LOW
    else:
        side = before
    if side == before:
        return []
    state[rule.prop] = side
    if before is None:
        first_raises = side == HIGH and rule.on_first == "raise" and not retained
        return [(rule.type, rule.vkp_alert_code)] if first_raises else []
    if side == HIGH:
        return [(rule.type, rule.vkp_alert_code)]
    return [] if rule.clear_type is None else [(rule.clear_type, rule.clear_vkp_alert_code)]


def remembered_state(profile: Profile, previous: Mapping[str, Any]) -> dict[str, StateValue]:
    """The usable part of a stored state: known properties with values of the right kind.

    Anything else (a property no rule reads any more, a value a newer profile would not
    accept) counts as unknown, as if the device had never been heard from.
    """
    kinds: dict[str, AnyRule] = {}
    for rule in profile.events:
        if isinstance(rule, EdgeRule | EnumRule | ThresholdRule):
            kinds.setdefault(rule.prop, rule)
    state: dict[str, StateValue] = {}
    for prop, rule in kinds.items():
        value = previous.get(prop)
        if isinstance(rule, EdgeRule):
            ok = isinstance(value, bool)
        elif isinstance(rule, ThresholdRule):
            ok = value in (HIGH, LOW)
        else:
            reading = profile.reading(prop)
            ok = (
                isinstance(value, str)
                and reading is not None
                and read_value(reading, value) == value
            )
        if ok and isinstance(value, bool | str):
            state[prop] = value
    return state


def _draft(
    profile: Profile,
    rule: AnyRule,
    event_type: str,
    vkp_alert_code: str | None,
    value: ReadingValue,
    readings: Readings,
    message: Mapping[str, Any],
    occurred_at: datetime,
) -> DraftSpec:
    data: dict[str, int | bool | str] = {rule.prop: _signable(value)}
    rejected = {r.prop for r in readings.rejected}
    for name in profile.data_properties:
        if name in data or name in rejected:
            continue
        if name in readings.values:
            data[name] = _signable(readings.values[name])
        elif profile.reading(name) is None:
            kept = signable_value(message.get(name))
            if kept is not None:
                data[name] = kept
    return DraftSpec(
        event_class=rule.event_class,
        type=event_type,
        priority=rule.effective_priority,
        occurred_at=occurred_at,
        vkp_alert_code=vkp_alert_code,
        data=data,
    )


# --- step 3: device health ------------------------------------------------------------------


def device_health(profile: Profile, message: Mapping[str, Any]) -> Health:
    """Battery, link quality and tamper from one message, judged by the profile's limits.

    ``battery_low`` is true when the device says so (``battery_low_property``) or its
    percentage is at or below ``battery_low_percent``; ``None`` when neither is reported.
    Never raises: bad values are left out and listed in ``rejected``.
    """
    supervision = profile.supervision
    readings = read_message(profile, message)
    values = readings.values
    battery = values.get("battery")
    battery_percent = battery if isinstance(battery, Decimal) else None
    lows: list[bool] = []
    if supervision.battery_low_property is not None:
        flag = values.get(supervision.battery_low_property)
        if isinstance(flag, bool):
            lows.append(flag)
    if supervision.battery_low_percent is not None and battery_percent is not None:
        lows.append(battery_percent <= supervision.battery_low_percent)
    link = values.get("linkquality")
    linkquality = int(link) if isinstance(link, Decimal) else None
    tamper = None
    if supervision.tamper_property is not None:
        flag = values.get(supervision.tamper_property)
        tamper = flag if isinstance(flag, bool) else None
    health_props = {
        "battery",
        "linkquality",
        supervision.battery_low_property,
        supervision.tamper_property,
    }
    return Health(
        battery_percent=battery_percent,
        battery_low=any(lows) if lows else None,
        linkquality=linkquality,
        link_poor=None if linkquality is None else linkquality < supervision.linkquality_poor_below,
        tamper=tamper,
        rejected=tuple(r for r in readings.rejected if r.prop in health_props),
    )


# --- time -------------------------------------------------------------------------------------


def occurred_time(message: Mapping[str, Any], received_at: datetime) -> datetime:
    """When the device spoke: Z2M's ``last_seen`` when present and plausible, else receipt.

    ``last_seen`` matters after an outage: the broker kept the message while the gateway
    was down, and the operator must see when the button was pressed, not when it arrived.
    It is used only if it carries a zone (ISO 8601) or is epoch milliseconds, is not in
    the future of ``received_at`` and is at most ``MAX_DEVICE_AGE`` old.
    """
    seen = message.get("last_seen")
    moment: datetime | None = None
    try:
        if isinstance(seen, str) and len(seen) <= MAX_TEXT:
            moment = parse_ts(seen)
        elif isinstance(seen, int) and not isinstance(seen, bool):
            moment = datetime.fromtimestamp(seen / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        moment = None
    if moment is None or moment > received_at or received_at - moment > MAX_DEVICE_AGE:
        return received_at
    return moment
