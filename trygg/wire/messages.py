"""Request and answer bodies of the centre's gateway API, other than events and receipts.

The heartbeat also carries the installation between the two sides (issue #3): the gateway
reports its device inventory (when it changed), the results of device commands and its
last test alarm's round trip; the answer carries device commands queued by an installer at
the centre. Every addition is optional and left out of the JSON when empty, so a gateway or
a centre that predates them sees exactly the bodies it always did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trygg.wire.canonical import canonical_json
from trygg.wire.jws import sign_detached, verify_detached

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_INVENTORY_DEVICES = 128
"""Devices per inventory report: a home has a dozen; more is an institution's whole network,
and the heartbeat must stay far below the centre's body limit."""
MAX_COMMANDS = 50
"""Device commands per heartbeat answer (and results per heartbeat)."""

DEVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._/:-]{0,127}$"
"""An allow-list name, as Zigbee2MQTT friendly names allow ('bedroom/button')."""
IEEE_PATTERN = r"^0x[0-9a-fA-F]{16}$"


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
    inventory: Inventory | None = None
    command_results: list[CommandResult] = Field(default_factory=list, max_length=MAX_COMMANDS)
    test_alarm: TestAlarmReport | None = None

    def to_wire(self) -> dict[str, Any]:
        """The signed JSON; optional parts are left out when empty (older centres)."""
        wire = self.model_dump(mode="json", exclude_none=True)
        if not wire.get("command_results"):
            wire.pop("command_results", None)
        return wire


class HeartbeatAnswer(BaseModel):
    """The centre's answer. Unknown members are ignored, so a newer centre can add some."""

    model_config = ConfigDict(extra="ignore")

    heartbeat_interval_s: int
    server_time: str
    inventory_digest: str | None = Field(default=None, max_length=64)
    """The digest of the last inventory the centre stored for this gateway."""
    commands: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_COMMANDS)
    """Device commands as signed; parse them with :func:`verify_commands`."""
    commands_sig: str | None = Field(default=None, max_length=1024)

    def to_wire(self) -> dict[str, Any]:
        """The JSON answer; optional parts are left out when empty (older gateways)."""
        wire = self.model_dump(mode="json", exclude_none=True)
        if not wire.get("commands"):
            wire.pop("commands", None)
            wire.pop("commands_sig", None)
        return wire


# --- the installation, carried by heartbeats ------------------------------------------------

DeviceState = Literal["online", "offline", "silent", "unknown"]
CommandOp = Literal["add", "remove", "rename", "move"]


class InventoryDevice(BaseModel):
    """One device of the home as the gateway knows it; no payload values, no health data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    ieee: str | None = Field(default=None, pattern=IEEE_PATTERN)
    profile: str | None = Field(default=None, max_length=128)
    room: str | None = Field(default=None, max_length=64)
    place: str | None = Field(default=None, max_length=128)
    allow_listed: bool
    status: str | None = Field(default=None, max_length=16)
    """The gateway's verdict: trusted, unknown, unsupported, mismatch, pending or left."""
    reason: str | None = Field(default=None, max_length=200)
    state: DeviceState = "unknown"
    battery: int | None = Field(default=None, ge=0, le=100)
    linkquality: int | None = Field(default=None, ge=0, le=255)
    last_seen: str | None = Field(default=None, max_length=40)
    model: str | None = Field(default=None, max_length=64)


class Inventory(BaseModel):
    """The gateway's devices; ``digest`` changes when anything an installer cares about does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digest: str = Field(min_length=8, max_length=64)
    generated_at: str = Field(max_length=40)
    devices: list[InventoryDevice] = Field(max_length=MAX_INVENTORY_DEVICES)
    truncated: bool = False


class CommandResult(BaseModel):
    """The gateway's answer to one device command: applied, or failed with a reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1)
    status: Literal["applied", "failed"]
    reason: str | None = Field(default=None, max_length=200)


class TestAlarmReport(BaseModel):
    """The last test alarm and how long the centre's verified receipt took to come back."""

    __test__ = False  # not a pytest class, whatever its name says

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=36, max_length=36)
    rtt_ms: int = Field(ge=0)
    receipt: Literal["accepted", "duplicate", "rejected"]


class DeviceCommand(BaseModel):
    """An allow-list change an installer queued at the centre for one gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1)
    gateway_id: str = Field(min_length=1, max_length=128)
    op: CommandOp
    name: str = Field(pattern=DEVICE_NAME_PATTERN)
    to: str | None = Field(default=None, pattern=DEVICE_NAME_PATTERN)
    profile: str | None = Field(default=None, min_length=1, max_length=128)
    room: str | None = Field(default=None, max_length=64)
    place: str | None = Field(default=None, max_length=128)
    ieee: str | None = Field(default=None, pattern=IEEE_PATTERN)
    issued_by: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _fields_of_op(self) -> DeviceCommand:
        if self.op == "add" and self.profile is None:
            raise ValueError("an add command needs a profile")
        if self.op == "rename" and self.to is None:
            raise ValueError("a rename command needs 'to'")
        if self.op == "move" and self.room is None and self.place is None:
            raise ValueError("a move command needs a room or a place")
        return self


def _commands_payload(gateway_id: str, commands: Sequence[dict[str, Any]]) -> bytes:
    return canonical_json({"gateway_id": gateway_id, "commands": list(commands)})


def sign_commands(
    gateway_id: str, commands: Sequence[DeviceCommand], key: Ed25519PrivateKey, kid: str
) -> str:
    """The centre's signature over one gateway's commands (with its receipt key).

    Commands change what a gateway trusts, so like receipts they must verify with the key the
    gateway got at enrolment: a proxy or a forged answer must not drop an alarm button.
    """
    wire = [c.model_dump(mode="json", exclude_none=True) for c in commands]
    return sign_detached(_commands_payload(gateway_id, wire), key, kid)


def verify_commands(
    gateway_id: str, raw: Sequence[dict[str, Any]], sig: str, key: Ed25519PublicKey
) -> list[DeviceCommand]:
    """Verify the signature over the commands as received, then parse them.

    Raises JwsError (bad signature), CanonicalJsonError or pydantic.ValidationError; a
    command naming another gateway is refused as a ValueError.
    """
    verify_detached(sig, _commands_payload(gateway_id, raw), key)
    commands = [DeviceCommand.model_validate(item) for item in raw]
    for command in commands:
        if command.gateway_id != gateway_id:
            raise ValueError(f"command {command.id} names another gateway")
    return commands
