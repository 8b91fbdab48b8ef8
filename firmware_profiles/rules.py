"""Turn one device message into the events its profile says to raise (pure, no I/O).

The caller keeps, per device, the last value of each edge property (``Profile.
edge_properties``) and passes it back in; this module never remembers anything itself,
so the pipeline can persist that state in the same transaction as the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from drivers.mqtt.zigbee2mqtt import Z2mParseError, signable_value
from firmware_profiles.schema import ActionRule, EdgeRule, Profile
from trygg.wire.clock import parse_ts
from trygg.wire.envelope import EventClass

MAX_DEVICE_AGE = timedelta(days=7)
"""How far back a device's ``last_seen`` may lie before it is distrusted."""


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
    state: dict[str, bool]
    """The device's edge-property values after this message (all of them, not a delta)."""

    @property
    def raises(self) -> bool:
        return bool(self.drafts)


def evaluate(
    profile: Profile,
    previous_state: Mapping[str, Any],
    message: Mapping[str, Any],
    received_at: datetime,
    *,
    retained: bool = False,
) -> Evaluation:
    """The events ``message`` raises for a device of ``profile``, and its new edge state.

    - action rules raise once per message whose value is listed; an empty, null or
      unlisted action raises nothing (Z2M may follow an action with a cleared one);
    - a ``retained`` message (the broker's stored copy, sent on subscribing) raises no
      action: it is an old press, already handled or already lost, never a new one;
    - edge rules raise when a boolean property changes to the rule's value; the first
      value ever seen is recorded without raising, and a message without the property
      (a battery report) or with ``null`` leaves the remembered value alone.

    Raises Z2mParseError when a property a rule reads has the wrong type.
    """
    occurred_at = occurred_time(message, received_at)
    known = {k: v for k, v in previous_state.items() if isinstance(v, bool)}
    state = {k: v for k, v in known.items() if k in profile.edge_properties}
    drafts: list[DraftSpec] = []
    for rule in profile.events:
        value = message.get(rule.prop)
        if isinstance(rule, ActionRule):
            if _action_fires(rule, value) and not retained:
                drafts.append(_draft(profile, rule, str(value), message, occurred_at))
        elif isinstance(rule, EdgeRule):
            if value is None:
                continue
            if not isinstance(value, bool):
                raise Z2mParseError(f"{rule.prop} is not a boolean")
            before = known.get(rule.prop)
            state[rule.prop] = value
            if before is not None and before != value and value == rule.to:
                drafts.append(_draft(profile, rule, value, message, occurred_at))
    return Evaluation(drafts=drafts, state=state)


def _action_fires(rule: ActionRule, value: object) -> bool:
    if value is None or value == "":
        return False
    if not isinstance(value, str):
        raise Z2mParseError(f"{rule.prop} is not a string")
    return value in rule.values


def _draft(
    profile: Profile,
    rule: ActionRule | EdgeRule,
    value: str | bool,
    message: Mapping[str, Any],
    occurred_at: datetime,
) -> DraftSpec:
    data: dict[str, int | bool | str] = {rule.prop: value}
    for name in profile.data_properties:
        kept = signable_value(message.get(name))
        if kept is not None and name not in data:
            data[name] = kept
    return DraftSpec(
        event_class=rule.event_class,
        type=rule.type,
        priority=rule.effective_priority,
        occurred_at=occurred_at,
        vkp_alert_code=rule.vkp_alert_code,
        data=data,
    )


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
        if isinstance(seen, str):
            moment = parse_ts(seen)
        elif isinstance(seen, int) and not isinstance(seen, bool):
            moment = datetime.fromtimestamp(seen / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        moment = None
    if moment is None or moment > received_at or received_at - moment > MAX_DEVICE_AGE:
        return received_at
    return moment
