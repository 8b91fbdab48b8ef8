"""The gateway's configuration: one YAML file in the state directory, validated on load.

Everything a home needs to differ on lives here (broker, allow-listed devices, limits);
what the centre decides at enrolment lives in ``enrolment.json`` beside it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_FILE = "gateway.yaml"
ENROLMENT_FILE = "enrolment.json"
SIGNING_KEY_FILE = "signing_key.pem"
DATABASE_FILE = "gateway.sqlite"
DEFAULT_STATE_DIR = Path("/var/lib/trygg-gateway")
MAX_LOCATION = 128
"""An event's ``device.room`` holds at most this many characters."""


class ConfigError(RuntimeError):
    """The configuration file is missing a value or holds one that cannot be used."""


class AllowedDevice(BaseModel):
    """A device the installer has paired into this home; anything else is reported, not used."""

    model_config = ConfigDict(extra="forbid")

    friendly_name: str = Field(min_length=1, max_length=128)
    ieee: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{16}$")
    profile: str = Field(
        min_length=1, max_length=128, description="profile id, e.g. aqara.WXKG11LM"
    )
    room: str | None = Field(default=None, max_length=64)
    place: str | None = Field(
        default=None,
        max_length=128,
        description="where the kit is (home, or a short-term stay); data, so it moves unpaired",
    )
    resident_ref: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _location_fits(self) -> AllowedDevice:
        location = self.location
        if location is not None and len(location) > MAX_LOCATION:
            raise ValueError(f"room and place together must fit {MAX_LOCATION} characters")
        return self

    @property
    def location(self) -> str | None:
        """Where the device is, as events carry it: VKP's ``"[room] @ [place]"`` convention.

        The place travels in every event so that, during a short-term stay, the operator
        sees where the resident is now, not only the home the gateway was enrolled to.
        """
        if self.room and self.place:
            return f"{self.room} @ {self.place}"
        return self.room or self.place


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    base_topic: str = "zigbee2mqtt"
    client_id: str | None = Field(
        default=None, description="persistent-session id; defaults to trygg-<gateway id>"
    )
    username: str | None = None
    password: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=600)


class OutboxLimits(BaseModel):
    """Bounds of the outbox; see gateway/outbox.py for the eviction policy."""

    model_config = ConfigDict(extra="forbid")

    max_rows: int = Field(default=1_000_000, ge=100)
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024)
    alarm_reserve_rows: int = Field(default=50_000, ge=10)
    alarm_reserve_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    delivered_ttl_s: int = Field(default=24 * 3600, ge=0)
    depth_alarm_rows: int = Field(default=100_000, ge=1)
    age_alarm_s: int = Field(default=3600, ge=1)


class UplinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=250, ge=1, le=500)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = DEFAULT_STATE_DIR
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    devices: list[AllowedDevice] = Field(default_factory=list)
    outbox: OutboxLimits = Field(default_factory=OutboxLimits)
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)
    profiles_dir: Path | None = Field(
        default=None, description="site-local device profiles that extend the shipped ones"
    )

    @property
    def key_file(self) -> Path:
        return self.state_dir / SIGNING_KEY_FILE

    @property
    def enrolment_file(self) -> Path:
        return self.state_dir / ENROLMENT_FILE

    @property
    def database_file(self) -> Path:
        return self.state_dir / DATABASE_FILE

    def to_yaml(self) -> str:
        data: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return str(yaml.safe_dump(data, sort_keys=False))


def load_config(state_dir: Path) -> GatewayConfig:
    """Read ``gateway.yaml`` from the state directory; defaults when it does not exist."""
    path = state_dir / CONFIG_FILE
    if not path.exists():
        return GatewayConfig(state_dir=state_dir)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping")
    raw["state_dir"] = str(state_dir)
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def save_config(config: GatewayConfig) -> Path:
    """Write ``gateway.yaml`` atomically: the running daemon, which reloads the allow-list
    when the file changes, reads the old file or the new one, never half of one."""
    path = config.state_dir / CONFIG_FILE
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, config.to_yaml().encode("utf-8"))
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by a fsync'ed temporary file; keep an existing file's owner and mode.

    A root shell editing the file for a daemon that runs as its own user must not leave it
    unreadable to that daemon; a new file gets mode 0600 (it may hold the broker password).
    """
    try:
        before: os.stat_result | None = path.stat()
    except FileNotFoundError:
        before = None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if before is not None:
            os.fchmod(fd, before.st_mode & 0o777)
            if hasattr(os, "fchown") and (before.st_uid, before.st_gid) != (
                os.getuid(),
                os.getgid(),
            ):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, before.st_uid, before.st_gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
