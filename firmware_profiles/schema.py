"""Declarative device profiles: what a model is, how to recognise it, what it can raise.

A profile is data (YAML) validated by these models, so adding a device model is a file,
not code, and every shipped file is checked by one generic test. Two event rule kinds
exist so far; later kinds (thresholds, absence timers) add members to ``EventRule``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trygg.wire.envelope import DEFAULT_PRIORITY, EventClass

_PROFILE_ID = re.compile(r"^[a-z0-9_]+\.[A-Za-z0-9_.-]+$")
_EVENT_TYPE = re.compile(r"^[a-z]+(\.[a-z0-9_]+)+$")
_PROPERTY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VKP_CODE = re.compile(r"^[1-7](\.[0-9]{1,2}){0,2}$")

DEFAULT_DATA_PROPERTIES = ("battery", "voltage", "linkquality")
"""Device-health fields copied into every event's ``data`` when the payload has them."""


class Fingerprint(BaseModel):
    """How ``bridge/devices`` identifies the model (definition.model/vendor, model_id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=64)
    vendor: str = Field(min_length=1, max_length=64)
    model_id: tuple[str, ...] = Field(
        min_length=1, description="Zigbee modelID strings; one model may report several"
    )

    @field_validator("model_id", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    prop: str = Field(alias="property", description="the Z2M payload property it reads")
    type: str
    event_class: EventClass = Field(alias="class")
    priority: int | None = Field(default=None, ge=0, le=9)
    vkp_alert_code: str | None = None

    @field_validator("prop")
    @classmethod
    def _property_name(cls, value: str) -> str:
        if not _PROPERTY.match(value):
            raise ValueError("property must be a lower-case Z2M property name")
        return value

    @field_validator("type")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not _EVENT_TYPE.match(value) or len(value) > 64:
            raise ValueError("type must be dotted lower-case, e.g. alarm.button")
        return value

    @field_validator("vkp_alert_code")
    @classmethod
    def _vkp(cls, value: str | None) -> str | None:
        if value is not None and not _VKP_CODE.match(value):
            raise ValueError("not a vkp-alert-code-v090 code (standards.md §1.4.1)")
        return value

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

    Values not listed (and empty or cleared actions) raise nothing.
    """

    kind: Literal["action"]
    values: frozenset[str] = Field(min_length=1)


class EdgeRule(_RuleBase):
    """A boolean state property: one event when it changes to ``to`` from the opposite.

    The first value ever seen for a device is recorded, not raised: at gateway start
    nobody opened a door, the gateway just learnt it was open.
    """

    kind: Literal["edge"]
    to: bool


EventRule = Annotated[ActionRule | EdgeRule, Field(discriminator="kind")]


class Profile(BaseModel):
    """One device model, e.g. ``aqara.WXKG11LM``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    vendor: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=500)
    transport: Literal["zigbee2mqtt"]
    fingerprint: Fingerprint
    power_source: Literal["battery", "mains"]
    check_in_interval_s: int = Field(
        ge=10, le=7 * 24 * 3600, description="how often the device reports when all is well"
    )
    data_properties: tuple[str, ...] = DEFAULT_DATA_PROPERTIES
    events: tuple[EventRule, ...] = ()

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _PROFILE_ID.match(value) or len(value) > 128:
            raise ValueError("id must look like vendor.MODEL, e.g. aqara.WXKG11LM")
        return value

    @model_validator(mode="after")
    def _one_edge_per_transition(self) -> Profile:
        seen: set[tuple[str, bool]] = set()
        for rule in self.events:
            if isinstance(rule, EdgeRule):
                if (rule.prop, rule.to) in seen:
                    raise ValueError(f"two edge rules for {rule.prop} -> {rule.to}")
                seen.add((rule.prop, rule.to))
        return self

    @property
    def edge_properties(self) -> frozenset[str]:
        """The properties whose last value the gateway must remember between messages."""
        return frozenset(rule.prop for rule in self.events if isinstance(rule, EdgeRule))
