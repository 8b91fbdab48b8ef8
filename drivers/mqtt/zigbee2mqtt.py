"""Zigbee2MQTT topics and payloads, parsed without I/O (standards.md §4.1-4.2).

Everything here takes a topic string or payload bytes and returns typed values or raises
:class:`Z2mParseError`; nothing else escapes, so the pipeline can report bad input and
move on. Payload contents never appear in error reasons: they may carry health data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from trygg.wire.canonical import MAX_SAFE_INTEGER, CanonicalJsonError, parse_json_object

MAX_STATE_BYTES = 64 * 1024
"""A device state is a few hundred bytes; anything near this is garbage or an attack."""

MAX_BRIDGE_DEVICES_BYTES = 4 * 1024 * 1024
"""``bridge/devices`` lists every device with its exposes; a big network is ~1 MB."""

MAX_TEXT_VALUE = 64
"""Longest string copied from a payload into event data."""

_AVAILABILITY = {"online": True, "offline": False}


class Z2mParseError(ValueError):
    """A topic or payload that cannot be used; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Z2mTopicKind(StrEnum):
    DEVICE_STATE = "device_state"
    DEVICE_AVAILABILITY = "device_availability"
    DEVICE_COMMAND = "device_command"
    """``<name>/set``, ``<name>/get``, ``<name>/set/<attr>``: our own requests, echoed."""
    DEVICE_LEGACY_ACTION = "device_legacy_action"
    """Z2M 1.x ``<name>/action``: the same action also arrives on the state topic."""
    BRIDGE_STATE = "bridge_state"
    BRIDGE_DEVICES = "bridge_devices"
    BRIDGE_EVENT = "bridge_event"
    BRIDGE_OTHER = "bridge_other"
    FOREIGN = "foreign"


@dataclass(frozen=True, slots=True)
class Z2mTopic:
    kind: Z2mTopicKind
    device: str | None = None
    """The friendly name (or IEEE address) for device topics; ``None`` otherwise."""


def classify(base_topic: str, topic: str) -> Z2mTopic:
    """Say what a topic under ``base_topic`` carries.

    Friendly names may contain ``/`` (``bedroom/door``), so a topic is classified by its
    suffix: ``/availability``, ``/set``/``/get`` (optionally followed by one attribute),
    ``/action``; everything else under the base is a device's state.
    """
    prefix = base_topic + "/"
    if not topic.startswith(prefix) or len(topic) == len(prefix):
        return Z2mTopic(Z2mTopicKind.FOREIGN)
    rest = topic[len(prefix) :]
    if rest == "bridge" or rest.startswith("bridge/"):
        return _classify_bridge(rest)
    parts = rest.split("/")
    if any(part == "" or "+" in part or "#" in part for part in parts):
        return Z2mTopic(Z2mTopicKind.FOREIGN)
    if len(parts) >= 2 and parts[-1] == "availability":
        return Z2mTopic(Z2mTopicKind.DEVICE_AVAILABILITY, "/".join(parts[:-1]))
    if len(parts) >= 2 and parts[-1] in ("set", "get"):
        return Z2mTopic(Z2mTopicKind.DEVICE_COMMAND, "/".join(parts[:-1]))
    if len(parts) >= 3 and parts[-2] in ("set", "get"):
        return Z2mTopic(Z2mTopicKind.DEVICE_COMMAND, "/".join(parts[:-2]))
    if len(parts) >= 2 and parts[-1] == "action":
        return Z2mTopic(Z2mTopicKind.DEVICE_LEGACY_ACTION, "/".join(parts[:-1]))
    return Z2mTopic(Z2mTopicKind.DEVICE_STATE, rest)


def _classify_bridge(rest: str) -> Z2mTopic:
    kinds = {
        "bridge/state": Z2mTopicKind.BRIDGE_STATE,
        "bridge/devices": Z2mTopicKind.BRIDGE_DEVICES,
        "bridge/event": Z2mTopicKind.BRIDGE_EVENT,
    }
    return Z2mTopic(kinds.get(rest, Z2mTopicKind.BRIDGE_OTHER))


def parse_state(payload: bytes) -> dict[str, Any]:
    """A device state: a JSON object, at most 64 KiB, no duplicate keys."""
    if not payload:
        raise Z2mParseError("empty payload")
    if len(payload) > MAX_STATE_BYTES:
        raise Z2mParseError(f"payload of {len(payload)} bytes exceeds {MAX_STATE_BYTES}")
    try:
        return parse_json_object(payload)
    except CanonicalJsonError as exc:
        raise Z2mParseError(f"not a JSON object: {_short(str(exc))}") from exc


def parse_availability(payload: bytes) -> bool:
    """``True`` for online. Accepts Z2M 2.x ``{"state":"online"}`` and 1.x plain ``online``."""
    if not payload:
        raise Z2mParseError("empty payload")
    if len(payload) > 1024:
        raise Z2mParseError(f"availability payload of {len(payload)} bytes is too long")
    plain = payload.strip()
    for word, online in _AVAILABILITY.items():
        if plain == word.encode():
            return online
    state = parse_state(payload).get("state")
    if not isinstance(state, str) or state not in _AVAILABILITY:
        raise Z2mParseError("availability state is neither 'online' nor 'offline'")
    return _AVAILABILITY[state]


def parse_bridge_state(payload: bytes) -> bool:
    """``bridge/state`` uses the same two formats as device availability."""
    return parse_availability(payload)


@dataclass(frozen=True, slots=True)
class BridgeDevice:
    """One entry of ``bridge/devices``: enough to recognise a device and its model."""

    ieee: str
    friendly_name: str
    type: str | None
    """Coordinator, Router or EndDevice."""
    model: str | None
    vendor: str | None
    model_id: str | None
    power_source: str | None
    supported: bool
    interview_completed: bool
    manufacturer: str | None = None
    """The Zigbee manufacturerName (tells generic Tuya ``TS0601`` models apart)."""
    software_build_id: str | None = None
    date_code: str | None = None
    interviewing: bool = False


def parse_bridge_devices(payload: bytes) -> list[BridgeDevice]:
    """The retained device list; entries without an IEEE address or name are skipped."""
    if not payload:
        raise Z2mParseError("empty payload")
    if len(payload) > MAX_BRIDGE_DEVICES_BYTES:
        raise Z2mParseError(f"payload of {len(payload)} bytes exceeds {MAX_BRIDGE_DEVICES_BYTES}")
    # parse_json_object refuses non-objects; wrapping the array reuses its duplicate-key
    # and NaN refusals instead of writing a second JSON reader.
    try:
        wrapped = parse_json_object(b'{"devices":' + payload + b"}")
    except CanonicalJsonError as exc:
        raise Z2mParseError(f"not a JSON array: {_short(str(exc))}") from exc
    entries = wrapped["devices"]
    if len(wrapped) != 1 or not isinstance(entries, list):
        raise Z2mParseError("bridge/devices is not a JSON array")
    devices: list[BridgeDevice] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        ieee, name = entry.get("ieee_address"), entry.get("friendly_name")
        if not isinstance(ieee, str) or not isinstance(name, str) or not ieee or not name:
            continue
        definition = entry.get("definition")
        definition = definition if isinstance(definition, dict) else {}
        devices.append(
            BridgeDevice(
                ieee=ieee,
                friendly_name=name,
                type=_opt_str(entry.get("type")),
                model=_opt_str(definition.get("model")),
                vendor=_opt_str(definition.get("vendor")),
                model_id=_opt_str(entry.get("model_id")),
                power_source=_opt_str(entry.get("power_source")),
                supported=entry.get("supported") is True,
                interview_completed=entry.get("interview_completed") is True,
                manufacturer=_opt_str(entry.get("manufacturer")),
                software_build_id=_opt_str(entry.get("software_build_id")),
                date_code=_opt_str(entry.get("date_code")),
                interviewing=entry.get("interviewing") is True,
            )
        )
    return devices


@dataclass(frozen=True, slots=True)
class BridgeEvent:
    """``bridge/event``: a device joined, announced itself, was interviewed or left."""

    type: str
    friendly_name: str | None
    ieee: str | None
    status: str | None


def parse_bridge_event(payload: bytes) -> BridgeEvent:
    obj = parse_state(payload)
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise Z2mParseError("bridge event has no type")
    data = obj.get("data")
    data = data if isinstance(data, dict) else {}
    return BridgeEvent(
        type=_short(kind),
        friendly_name=_opt_str(data.get("friendly_name")),
        ieee=_opt_str(data.get("ieee_address")),
        status=_opt_str(data.get("status")),
    )


def signable_value(value: Any) -> int | bool | str | None:
    """A payload scalar as it may enter a signed event, or ``None`` to leave it out.

    Safe integers and booleans stay as they are; finite numbers with a fraction become
    exact decimal strings (``21.5`` → ``"21.5"``): floats never reach a signature. Short
    strings are kept; anything else (objects, lists, huge or non-finite numbers, long
    strings) is left out rather than allowed to spoil the event it rides on.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(Decimal(repr(value)))
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT_VALUE else None
    return None


def _opt_str(value: object) -> str | None:
    return value[:MAX_TEXT_VALUE] if isinstance(value, str) and value else None


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."
