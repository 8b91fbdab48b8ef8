"""Request and answer bodies of the centre's gateway API, other than events and receipts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024


class EnrolmentRequest(BaseModel):
    """``POST /v1/enrol``: a one-time code and the gateway's signing public key."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=4, max_length=64)
    public_key: str = Field(min_length=43, max_length=43, description="raw Ed25519, base64url")
    kid: str = Field(min_length=1, max_length=128)
    hostname: str | None = Field(default=None, max_length=128)


class EnrolmentAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gateway_id: str
    municipality: str
    home: str
    center_public_key: str
    center_kid: str
    heartbeat_interval_s: int


class Heartbeat(BaseModel):
    """Signed like an event but never queued: a stale heartbeat is worth nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    gateway_id: str = Field(max_length=128)
    boot_id: str = Field(max_length=128)
    sent_at: str = Field(max_length=40)
    outbox_depth: int = Field(ge=0)
    alarms_queued: int = Field(ge=0)
    oldest_queued_age_s: int = Field(ge=0)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class HeartbeatAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heartbeat_interval_s: int
    server_time: str
