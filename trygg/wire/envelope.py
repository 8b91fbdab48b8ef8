"""The event envelope (ARCHITECTURE.md §4) and its detached signature.

The gateway signs an event once, at creation, and resends the same bytes on every retry.
The centre re-canonicalises the JSON object it receives and verifies over those bytes, so
whitespace or member order added in transit never breaks a signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from trygg.wire.canonical import MAX_SAFE_INTEGER, canonical_json, check_signable
from trygg.wire.clock import parse_ts
from trygg.wire.ids import is_uuid7
from trygg.wire.jws import sign_detached, verify_detached

ENVELOPE_VERSION: Literal[1] = 1
MAX_EVENT_BYTES = 16 * 1024
"""Upper bound of one canonical event; larger ones are refused on both sides."""

EventClass = Literal["alarm", "technical", "measurement", "activity", "heartbeat"]

DEFAULT_PRIORITY: dict[str, int] = {
    "alarm": 1,
    "technical": 3,
    "measurement": 5,
    "activity": 6,
    "heartbeat": 9,
}
"""Lower is more urgent; the outbox and the uplink read ``ORDER BY priority, seq``."""

_CANONICALISED = "canonicalised"
"""Validation context flag: the whole event was already checked by canonical_json."""

_TYPE = re.compile(r"^[a-z]+(\.[a-z0-9_]+)+$")
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/#-]{0,127}$")
_VKP_CODE = re.compile(r"^[1-7](\.[0-9]{1,2}){0,2}$")


class DeviceRef(BaseModel):
    """The device an event came from: its gateway-local id, profile and room."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    profile: str | None = Field(default=None, max_length=128)
    room: str | None = Field(default=None, max_length=128)


class Event(BaseModel):
    """One thing that happened in a home, as both sides see it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    v: Literal[1] = ENVELOPE_VERSION
    event_id: str
    gateway_id: str
    boot_id: str
    seq: int = Field(ge=1, le=MAX_SAFE_INTEGER)
    occurred_at: str
    recorded_at: str
    event_class: EventClass = Field(alias="class")
    type: str = Field(max_length=64)
    priority: int = Field(ge=0, le=9)
    resident_ref: str | None = Field(default=None, max_length=128)
    device: DeviceRef | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    vkp_alert_code: str | None = None

    @field_validator("event_id")
    @classmethod
    def _uuid7(cls, value: str) -> str:
        if not is_uuid7(value):
            raise ValueError("event_id must be a lower-case UUIDv7")
        return value

    @field_validator("gateway_id", "boot_id")
    @classmethod
    def _ident(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError("must be 1-128 letters, digits or ._:@/#-")
        return value

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        parse_ts(value)
        return value

    @field_validator("type")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not _TYPE.match(value):
            raise ValueError("type must be dotted lower-case, e.g. alarm.button")
        return value

    @field_validator("vkp_alert_code")
    @classmethod
    def _vkp(cls, value: str | None) -> str | None:
        if value is not None and not _VKP_CODE.match(value):
            raise ValueError("not a vkp-alert-code-v090 code")
        return value

    @field_validator("data")
    @classmethod
    def _signable(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not (info.context and info.context.get(_CANONICALISED)):
            check_signable(value, "$.data")
        return value

    @model_validator(mode="after")
    def _type_matches_class(self) -> Event:
        if self.type.split(".", 1)[0] != self.event_class:
            raise ValueError(f"type {self.type!r} does not belong to class {self.event_class!r}")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON object that is signed and sent."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def canonical(self) -> bytes:
        return canonical_json(self.to_wire())


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """An event's canonical bytes and the detached JWS over them."""

    event: Event
    body: bytes
    sig: str

    def to_wire(self) -> dict[str, Any]:
        return {"event": self.event.to_wire(), "sig": self.sig}


def sign_event(event: Event, key: Ed25519PrivateKey, kid: str) -> SignedEvent:
    body = event.canonical()
    if len(body) > MAX_EVENT_BYTES:
        raise ValueError(f"event is {len(body)} bytes; the limit is {MAX_EVENT_BYTES}")
    return SignedEvent(event=event, body=body, sig=sign_detached(body, key, kid))


def verify_event(raw_event: dict[str, Any], sig: str, key: Ed25519PublicKey) -> SignedEvent:
    """Canonicalise what arrived, verify the signature over it, then validate the model.

    Raises CanonicalJsonError, JwsError or pydantic.ValidationError; the caller maps each
    to a rejection reason.
    """
    body = canonical_json(raw_event)
    if len(body) > MAX_EVENT_BYTES:
        raise ValueError(f"event is {len(body)} bytes; the limit is {MAX_EVENT_BYTES}")
    verify_detached(sig, body, key)
    event = Event.model_validate(raw_event, context={_CANONICALISED: True})
    return SignedEvent(event=event, body=body, sig=sig)
