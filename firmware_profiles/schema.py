"""Declarative device profiles: what a model is, how to recognise it, what it can raise.

A profile is data (YAML) validated by these models, so adding a device model is a file,
not code, and every shipped file is checked by one generic test. The shape follows EdgeX
device profiles (typed resources with units, scale, min/max) and Zigbee2MQTT definitions
(fingerprint → definition, typed exposes):

- ``fingerprint`` and ``firmware``: how ``bridge/devices`` identifies the model;
- ``readings``: the payload properties the gateway trusts, each with a kind and range;
  a value outside them is rejected for that property and never raises anything;
- ``events``: rules that turn readings into events (``action``, ``edge``, ``enum``,
  ``threshold``), each with its class, priority and VKP alert code;
- ``supervision``: how often the device must be heard from and what counts as a
  technical fault (battery, link, tamper), for the supervision and pairing code.

``check_in_interval_s`` lives in ``supervision``; a top-level ``check_in_interval_s`` (the
first format) is still accepted and moved there. Run ``python -m firmware_profiles.schema``
to regenerate ``profile.schema.json`` after changing these models.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from firmware_profiles.vkp import VKP_ALERT_CODES
from trygg.wire.envelope import DEFAULT_PRIORITY, EventClass

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent / "profile.schema.json"
"""The committed JSON Schema for editors (YAML files point at it)."""

_PROFILE_ID = re.compile(r"^[a-z0-9_]+\.[A-Za-z0-9_.-]+$")
_EVENT_TYPE = re.compile(r"^[a-z]+(\.[a-z0-9_]+)+$")
_PROPERTY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VERSION_PART = re.compile(r"[0-9]+|[A-Za-z]+")

NUMERIC_LIMIT = Decimal(10) ** 15
"""No reading or bound may exceed this magnitude: beyond it a value is garbage, and its
decimal text would no longer fit a JSON-safe integer."""

MAX_TEXT = 64
"""Longest text value taken from a payload (same bound as the driver's event data)."""

DEFAULT_DATA_PROPERTIES = ("battery", "voltage", "linkquality")
"""Device-health fields copied into every event's ``data`` when the payload has them."""

Category = Literal[
    "button",
    "pull_cord",
    "door",
    "motion",
    "presence",
    "water_leak",
    "smoke",
    "bed_chair",
    "fall_radar",
    "stove_guard",
    "other",
]
OnFirst = Literal["record", "raise"]
"""What the first value ever seen for a device does: ``record`` it silently (a door found
open at start-up was not opened now) or ``raise`` when it already matches (a fall or smoke
reported by a device we knew nothing about is still a fall or smoke)."""

FirmwareVerdict = Literal["inside", "outside", "unknown"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_or_many(value: object) -> object:
    return (value,) if isinstance(value, str) else value


def _property_name(value: str) -> str:
    if not _PROPERTY.match(value):
        raise ValueError("property must be a lower-case Z2M property name")
    return value


def _bounded(value: Decimal) -> Decimal:
    if not value.is_finite() or abs(value) > NUMERIC_LIMIT:
        raise ValueError(f"must be a finite number of magnitude at most {NUMERIC_LIMIT:.0e}")
    return value


def _fold(text: str) -> str:
    return text.strip().casefold()


def _check_type(value: str) -> str:
    if not _EVENT_TYPE.match(value) or len(value) > 64:
        raise ValueError("type must be dotted lower-case, e.g. alarm.button")
    return value


def _check_vkp(value: str) -> str:
    if value not in VKP_ALERT_CODES:
        raise ValueError(f"{value!r} is not a vkp-alert-code-v090 code (standards.md §1.4.1)")
    return value


PropertyName = Annotated[str, AfterValidator(_property_name)]
EventType = Annotated[str, AfterValidator(_check_type)]
VkpCode = Annotated[str, AfterValidator(_check_vkp)]
BoundedDecimal = Annotated[Decimal, AfterValidator(_bounded)]
OneOrMany = Annotated[tuple[str, ...], BeforeValidator(_one_or_many)]


# --- identity ------------------------------------------------------------------------------


class Fingerprint(_Strict):
    """How ``bridge/devices`` identifies the model.

    Z2M has already matched the device against its own database when it lists a
    ``definition``, so ``definition.model`` (and its vendor) decides. Without a definition
    (unsupported, or still interviewing) only ``model_id`` and the Zigbee manufacturer
    name are known; generic Tuya ids such as ``TS0601`` are shared by hundreds of models,
    so profiles for them list the manufacturer names that tell them apart.
    """

    model: str = Field(min_length=1, max_length=64, description="definition.model")
    vendor: str = Field(min_length=1, max_length=64, description="definition.vendor")
    vendor_aliases: OneOrMany = Field(
        default=(), description="other spellings Z2M versions use (TuYa, HEIMAN, Xiaomi)"
    )
    model_id: OneOrMany = Field(
        min_length=1, description="Zigbee modelID strings; one model may report several"
    )
    manufacturer: OneOrMany = Field(
        default=(), description="Zigbee manufacturerName values; empty means any"
    )

    @property
    def vendors(self) -> frozenset[str]:
        return frozenset(_fold(v) for v in (self.vendor, *self.vendor_aliases))

    def matches(
        self,
        *,
        model: str | None,
        vendor: str | None,
        model_id: str | None,
        manufacturer: str | None = None,
    ) -> bool:
        """Whether a ``bridge/devices`` entry is this model (see the class docstring)."""
        if model is not None:
            return model == self.model and (vendor is None or _fold(vendor) in self.vendors)
        if model_id is None or model_id not in self.model_id:
            return False
        return not self.manufacturer or manufacturer in self.manufacturer


def version_key(text: str | None) -> tuple[tuple[int, int, str], ...] | None:
    """An order for firmware strings (``0.0.0_0025``, ``20180130``): numbers numerically.

    ``None`` when there is nothing comparable in the text (absent, blank, punctuation).
    """
    if text is None:
        return None
    parts = _VERSION_PART.findall(text[:MAX_TEXT])
    if not parts:
        return None
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.casefold()) for p in parts)


class FirmwareRange(_Strict):
    """Firmware the profile was verified against, by Z2M's ``software_build_id``/``date_code``.

    Bounds are inclusive. A device outside them may publish other properties; discovery
    reports it to the installer instead of trusting it silently.
    """

    min_software_build_id: str | None = Field(default=None, max_length=MAX_TEXT)
    max_software_build_id: str | None = Field(default=None, max_length=MAX_TEXT)
    min_date_code: str | None = Field(default=None, max_length=MAX_TEXT)
    max_date_code: str | None = Field(default=None, max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _comparable(self) -> FirmwareRange:
        for bound in (
            self.min_software_build_id,
            self.max_software_build_id,
            self.min_date_code,
            self.max_date_code,
        ):
            if bound is not None and version_key(bound) is None:
                raise ValueError(f"firmware bound {bound!r} has no digits or letters")
        for low, high in (
            (self.min_software_build_id, self.max_software_build_id),
            (self.min_date_code, self.max_date_code),
        ):
            low_key, high_key = version_key(low), version_key(high)
            if low_key is not None and high_key is not None and low_key > high_key:
                raise ValueError(f"firmware range {low!r}..{high!r} is empty")
        return self

    def check(self, *, software_build_id: str | None, date_code: str | None) -> FirmwareVerdict:
        """``inside`` all set bounds, ``outside`` one, or ``unknown`` (value missing)."""
        verdict: FirmwareVerdict = "inside"
        for value, low, high in (
            (software_build_id, self.min_software_build_id, self.max_software_build_id),
            (date_code, self.min_date_code, self.max_date_code),
        ):
            if low is None and high is None:
                continue
            key = version_key(value)
            if key is None:
                verdict = "unknown"
                continue
            low_key, high_key = version_key(low), version_key(high)
            if (low_key is not None and key < low_key) or (high_key is not None and key > high_key):
                return "outside"
        return verdict


# --- readings --------------------------------------------------------------------------------


class _ReadingBase(_Strict):
    prop: PropertyName = Field(alias="property", description="the Z2M payload property")
    description: str = Field(default="", max_length=200)


class BinaryReading(_ReadingBase):
    """A JSON boolean (Z2M binary exposes with ``value_on: true``)."""

    kind: Literal["binary"]


class NumericReading(_ReadingBase):
    """A JSON number, multiplied by ``scale``; ``min``/``max`` apply to the scaled value.

    Values travel on as exact decimals (an integer when whole), never as floats.
    """

    kind: Literal["numeric"]
    unit: str | None = Field(default=None, max_length=16)
    scale: BoundedDecimal = Decimal(1)
    minimum: BoundedDecimal | None = Field(default=None, alias="min")
    maximum: BoundedDecimal | None = Field(default=None, alias="max")
    integer: bool = Field(default=False, description="refuse values with a fraction")

    @model_validator(mode="after")
    def _sane(self) -> NumericReading:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("min is above max")
        return self


class EnumReading(_ReadingBase):
    """A string from a fixed list (Z2M enum exposes)."""

    kind: Literal["enum"]
    values: tuple[str, ...] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(values)) != len(values):
            raise ValueError("enum values are listed twice")
        if any(not v or len(v) > MAX_TEXT for v in values):
            raise ValueError(f"enum values must be 1 to {MAX_TEXT} characters")
        return values


class TextReading(_ReadingBase):
    """A free string (Z2M text exposes, or an ``action`` without a declared list)."""

    kind: Literal["text"]
    max_length: int = Field(default=MAX_TEXT, ge=1, le=MAX_TEXT)


Reading = Annotated[
    BinaryReading | NumericReading | EnumReading | TextReading, Field(discriminator="kind")
]

STANDARD_READINGS: dict[str, BinaryReading | NumericReading | EnumReading | TextReading] = {
    "battery": NumericReading(
        kind="numeric", property="battery", unit="%", min=Decimal(0), max=Decimal(100)
    ),
    "linkquality": NumericReading(
        kind="numeric",
        property="linkquality",
        unit="lqi",
        min=Decimal(0),
        max=Decimal(255),
        integer=True,
    ),
}
"""Z2M's own exposes for these two (``e.battery()``, link quality 0–255), assumed by every
profile that does not declare them itself."""


# --- event rules -------------------------------------------------------------------------------


class _RuleBase(_Strict):
    prop: PropertyName = Field(alias="property", description="the Z2M payload property it reads")
    type: EventType
    event_class: EventClass = Field(alias="class")
    priority: int | None = Field(default=None, ge=0, le=9)
    vkp_alert_code: VkpCode | None = None

    @model_validator(mode="after")
    def _type_matches_class(self) -> _RuleBase:
        if self.type.split(".", 1)[0] != self.event_class:
            raise ValueError(f"type {self.type!r} does not belong to class {self.event_class!r}")
        return self

    @property
    def effective_priority(self) -> int:
        return DEFAULT_PRIORITY[self.event_class] if self.priority is None else self.priority


class ActionRule(_RuleBase):
    """An event-like property (``action``): one event per message whose value is listed.

    Values not listed (and empty or cleared actions) raise nothing; a retained message
    raises nothing (it is an old press).
    """

    kind: Literal["action"]
    values: frozenset[str] = Field(min_length=1)


class EdgeRule(_RuleBase):
    """A boolean state property: one event when it changes to ``to`` from the opposite.

    The first value ever seen for a device is recorded, not raised, unless ``on_first`` is
    ``raise``: at gateway start nobody opened a door, the gateway just learnt it was open.
    """

    kind: Literal["edge"]
    to: bool
    on_first: OnFirst = "record"


class EnumRule(_RuleBase):
    """A string state property: one event when it enters ``values`` from outside them.

    Moving between two listed values raises nothing more; leaving and entering again
    raises again. ``on_first`` as for edge rules.
    """

    kind: Literal["enum"]
    values: frozenset[str] = Field(min_length=1)
    on_first: OnFirst = "record"


class ThresholdRule(_RuleBase):
    """A numeric property with hysteresis: above ``above`` raises ``type`` once; below
    ``clear_below`` raises ``clear_type`` once (if given) and re-arms the rule.

    Values between the two change nothing, so a reading hovering at the limit cannot
    flood the outbox; a first value between them counts as below. Comparisons are strict.
    An alarm is cleared by an operator, never by a sensor, so alarm-class rules have no
    ``clear_type``.
    """

    kind: Literal["threshold"]
    above: BoundedDecimal
    clear_below: BoundedDecimal
    clear_type: EventType | None = None
    clear_vkp_alert_code: VkpCode | None = None
    on_first: OnFirst = "record"

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdRule:
        if self.clear_below > self.above:
            raise ValueError("clear_below must not be above 'above'")
        if self.clear_type is not None:
            if self.event_class == "alarm":
                raise ValueError("an alarm is cleared by an operator: no clear_type")
            if self.clear_type.split(".", 1)[0] != self.event_class:
                raise ValueError(f"clear_type does not belong to class {self.event_class!r}")
        elif self.clear_vkp_alert_code is not None:
            raise ValueError("clear_vkp_alert_code without clear_type")
        return self


EventRule = Annotated[ActionRule | EdgeRule | EnumRule | ThresholdRule, Field(discriminator="kind")]
StatefulRule = EdgeRule | EnumRule | ThresholdRule


# --- supervision --------------------------------------------------------------------------------


class ReportingRequest(_Strict):
    """A Z2M ``bridge/request/device/configure_reporting`` the pairing step must send.

    Some devices stay silent for up to 18 h with Z2M's default reporting; the check-in
    interval of their profile holds only once this request has been accepted.
    """

    endpoint: int = Field(default=1, ge=1, le=240)
    cluster: str = Field(min_length=1, max_length=64)
    attribute: str = Field(min_length=1, max_length=64)
    minimum_report_interval: int = Field(ge=0, le=65535)
    maximum_report_interval: int = Field(ge=1, le=65535)
    reportable_change: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> ReportingRequest:
        if self.minimum_report_interval > self.maximum_report_interval:
            raise ValueError("minimum_report_interval is above maximum_report_interval")
        return self


class Supervision(_Strict):
    """How the device proves it is alive and healthy (ARCHITECTURE.md §5 "Supervision").

    ``liveness`` says where silence is measured: ``reports`` (the device's own messages;
    sleepy battery devices with a built-in or configured check-in) or ``availability``
    (mains routers that Z2M pings; ``check_in_interval_s`` is then Z2M's active timeout
    and Z2M's availability topic says when it is offline).
    """

    check_in_interval_s: int = Field(
        ge=10, le=7 * 24 * 3600, description="how often the device reports when all is well"
    )
    liveness: Literal["reports", "availability"] = "reports"
    offline_after_intervals: Decimal = Field(
        default=Decimal("2.5"),
        ge=Decimal("1.5"),
        le=Decimal(10),
        description="silent this many check-in intervals means offline (about 2-3)",
    )
    offline_priority: int = Field(
        default=3, ge=0, le=9, description="2 or lower opens an alarm at the centre"
    )
    battery_low_property: PropertyName | None = Field(
        default=None, description="a boolean property the device sets when its battery is low"
    )
    battery_low_percent: int | None = Field(
        default=None, ge=1, le=99, description="battery at or below this percentage is low"
    )
    linkquality_poor_below: int = Field(default=20, ge=0, le=255)
    tamper_property: PropertyName | None = Field(
        default=None, description="a boolean property that is true while the case is open"
    )
    reporting: tuple[ReportingRequest, ...] = ()

    @model_validator(mode="after")
    def _reporting_fits(self) -> Supervision:
        for request in self.reporting:
            if request.maximum_report_interval > self.check_in_interval_s:
                raise ValueError(
                    f"reporting of {request.attribute} every "
                    f"{request.maximum_report_interval} s cannot meet the check-in interval"
                )
        return self

    @property
    def offline_after(self) -> timedelta:
        """Silence longer than this is an offline device."""
        millis = int(self.offline_after_intervals * self.check_in_interval_s * 1000)
        return timedelta(milliseconds=millis)


# --- the profile -----------------------------------------------------------------------------

AnyReading = BinaryReading | NumericReading | EnumReading | TextReading
AnyRule = ActionRule | EdgeRule | EnumRule | ThresholdRule


class Profile(_Strict):
    """One device model, e.g. ``aqara.WXKG11LM``."""

    id: str
    vendor: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=500)
    category: Category = "other"
    transport: Literal["zigbee2mqtt"]
    fingerprint: Fingerprint
    firmware: FirmwareRange | None = None
    power_source: Literal["battery", "mains"]
    readings: tuple[Reading, ...] = ()
    data_properties: tuple[PropertyName, ...] = DEFAULT_DATA_PROPERTIES
    events: tuple[EventRule, ...] = ()
    supervision: Supervision

    _by_property: dict[str, AnyReading] = PrivateAttr(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _PROFILE_ID.match(value) or len(value) > 128:
            raise ValueError("id must look like vendor.MODEL, e.g. aqara.WXKG11LM")
        return value

    @model_validator(mode="before")
    @classmethod
    def _legacy_check_in(cls, data: Any) -> Any:
        """The first format had ``check_in_interval_s`` at the top; move it in."""
        if not isinstance(data, dict) or "check_in_interval_s" not in data:
            return data
        data = dict(data)
        interval = data.pop("check_in_interval_s")
        supervision = data.get("supervision")
        if supervision is None:
            data["supervision"] = {"check_in_interval_s": interval}
        elif isinstance(supervision, dict) and "check_in_interval_s" not in supervision:
            data["supervision"] = {**supervision, "check_in_interval_s": interval}
        else:
            raise ValueError("check_in_interval_s is given both at the top and in supervision")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        declared: dict[str, AnyReading] = {}
        for reading in self.readings:
            if reading.prop in declared:
                raise ValueError(f"reading {reading.prop} is declared twice")
            declared[reading.prop] = reading
        by_property = {**STANDARD_READINGS, **_implied_readings(self), **declared}
        for rule in self.events:
            _check_rule_reading(rule, by_property[rule.prop])
        _check_rule_overlap(self.events)
        _check_supervision(self, by_property)
        self._by_property = by_property
        return self

    @property
    def edge_properties(self) -> frozenset[str]:
        """The properties of edge rules (booleans the gateway remembers)."""
        return frozenset(rule.prop for rule in self.events if isinstance(rule, EdgeRule))

    @property
    def state_properties(self) -> frozenset[str]:
        """Every property whose last value (or threshold side) the gateway remembers."""
        return frozenset(
            rule.prop
            for rule in self.events
            if isinstance(rule, EdgeRule | EnumRule | ThresholdRule)
        )

    @property
    def readings_by_property(self) -> Mapping[str, AnyReading]:
        """Declared readings, plus those implied by rules and Z2M's standard fields."""
        return self._by_property

    def reading(self, prop: str) -> AnyReading | None:
        return self._by_property.get(prop)

    @property
    def raises_alarms(self) -> bool:
        return any(rule.event_class == "alarm" for rule in self.events)


def _implied_readings(profile: Profile) -> dict[str, AnyReading]:
    """Readings for properties the profile uses without declaring (the first format)."""
    implied: dict[str, AnyReading] = {}
    for rule in profile.events:
        if isinstance(rule, EdgeRule):
            implied.setdefault(rule.prop, BinaryReading(kind="binary", property=rule.prop))
        elif isinstance(rule, ThresholdRule):
            implied.setdefault(rule.prop, NumericReading(kind="numeric", property=rule.prop))
        else:
            implied.setdefault(rule.prop, TextReading(kind="text", property=rule.prop))
    for name in (profile.supervision.battery_low_property, profile.supervision.tamper_property):
        if name is not None:
            implied.setdefault(name, BinaryReading(kind="binary", property=name))
    return implied


def _check_rule_reading(rule: AnyRule, reading: AnyReading) -> None:
    where = f"{rule.kind} rule on {rule.prop}"
    if isinstance(rule, EdgeRule) and not isinstance(reading, BinaryReading):
        raise ValueError(f"{where} needs a binary reading, not {reading.kind}")
    if isinstance(rule, ThresholdRule):
        if not isinstance(reading, NumericReading):
            raise ValueError(f"{where} needs a numeric reading, not {reading.kind}")
        if reading.maximum is not None and rule.above >= reading.maximum:
            raise ValueError(f"{where}: 'above' can never be crossed (max {reading.maximum})")
        if reading.minimum is not None and rule.clear_below <= reading.minimum:
            raise ValueError(f"{where}: clear_below can never be reached (min {reading.minimum})")
    if isinstance(rule, ActionRule | EnumRule):
        if not isinstance(reading, EnumReading | TextReading):
            raise ValueError(f"{where} needs an enum or text reading, not {reading.kind}")
        if isinstance(reading, EnumReading) and not rule.values <= set(reading.values):
            unknown = sorted(rule.values - set(reading.values))
            raise ValueError(f"{where} lists values the reading never has: {unknown}")


def _check_rule_overlap(rules: Iterable[AnyRule]) -> None:
    """One remembered value per property, and no value that raises two events."""
    kinds: dict[str, str] = {}
    edges: set[tuple[str, bool]] = set()
    listed: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        stateful = isinstance(rule, EdgeRule | EnumRule | ThresholdRule)
        if stateful and kinds.setdefault(rule.prop, rule.kind) != rule.kind:
            raise ValueError(f"{rule.prop} is read by both {kinds[rule.prop]} and {rule.kind}")
        if isinstance(rule, EdgeRule):
            if (rule.prop, rule.to) in edges:
                raise ValueError(f"two edge rules for {rule.prop} -> {rule.to}")
            edges.add((rule.prop, rule.to))
        elif isinstance(rule, ThresholdRule):
            if (rule.prop, "threshold") in listed:
                raise ValueError(f"two threshold rules on {rule.prop}")
            listed[(rule.prop, "threshold")] = set()
        else:
            seen = listed.setdefault((rule.prop, rule.kind), set())
            if seen & rule.values:
                raise ValueError(f"{rule.kind} value(s) {sorted(seen & rule.values)} listed twice")
            seen |= rule.values


def _check_supervision(profile: Profile, readings: Mapping[str, AnyReading]) -> None:
    supervision = profile.supervision
    for name in (supervision.battery_low_property, supervision.tamper_property):
        if name is not None and not isinstance(readings[name], BinaryReading):
            raise ValueError(f"supervision property {name} needs a binary reading")
    has_battery_rule = (
        supervision.battery_low_property is not None or supervision.battery_low_percent is not None
    )
    if profile.power_source == "mains" and has_battery_rule:
        raise ValueError("a mains device has no battery to supervise")


def profiles_matching(
    profiles: Iterable[Profile],
    *,
    model: str | None,
    vendor: str | None,
    model_id: str | None,
    manufacturer: str | None = None,
) -> list[Profile]:
    """The profiles whose fingerprint fits a ``bridge/devices`` entry (normally 0 or 1)."""
    return [
        p
        for p in profiles
        if p.fingerprint.matches(
            model=model, vendor=vendor, model_id=model_id, manufacturer=manufacturer
        )
    ]


# --- JSON Schema for editors ---------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a profile file, as committed in ``profile.schema.json``."""
    schema = Profile.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated by `python -m firmware_profiles.schema`; do not edit.",
        **schema,
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the committed JSON Schema."""
    parser = argparse.ArgumentParser(prog="python -m firmware_profiles.schema")
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    parser.add_argument("--output", type=Path, default=SCHEMA_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    text = json_schema_text()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            log.error("%s is out of date: run python -m firmware_profiles.schema", args.output)
            return 1
        log.info("%s is up to date", args.output)
        return 0
    args.output.write_text(text, encoding="utf-8")
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
