"""The response centre's settings: one validated object, built from arguments or the environment.

Every knob that differs between a laptop demo, the test suite and production lives here and
is passed in explicitly; nothing reads the environment behind the application's back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trygg.wire.messages import MAX_BATCH_BYTES

DEFAULT_STATE_DIR = Path("/var/lib/trygg-center")
RECEIPT_KEY_FILE = "receipt_key.pem"
ENV_PREFIX = "TRYGG_CENTER_"


class SettingsError(RuntimeError):
    """A setting from the environment or the command line cannot be used."""


def default_database_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'center.sqlite'}"


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling the operator wrote."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class CenterSettings(BaseModel):
    """Settings of one response-centre deployment (all workers share the same values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = DEFAULT_STATE_DIR
    database_url: str = Field(default="", description="empty: SQLite file in the state dir")

    heartbeat_interval_s: int = Field(default=60, ge=5, le=3600)
    offline_after_intervals: int = Field(default=3, ge=2, le=100)
    supervisor_enabled: bool = True
    supervision_period_s: float = Field(default=10.0, gt=0)

    gap_window: int = Field(default=1_000_000, ge=0)
    clock_skew_past_s: int = Field(default=24 * 3600, ge=0)
    clock_skew_future_s: int = Field(default=5 * 60, ge=0)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_batch_bytes: int = Field(default=MAX_BATCH_BYTES, ge=1024)

    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    session_cookie: str = Field(default="trygg_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_s: int = Field(default=15 * 60, ge=1)
    login_lockout_s: int = Field(default=5 * 60, ge=1)

    enrol_max_failures: int = Field(default=10, ge=1)
    enrol_failure_window_s: int = Field(default=15 * 60, ge=1)

    @model_validator(mode="after")
    def _fill_database_url(self) -> CenterSettings:
        url = self.database_url or default_database_url(self.state_dir)
        object.__setattr__(self, "database_url", normalise_database_url(url))
        return self

    @property
    def receipt_key_file(self) -> Path:
        return self.state_dir / RECEIPT_KEY_FILE

    @property
    def offline_after_s(self) -> int:
        return self.heartbeat_interval_s * self.offline_after_intervals

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CenterSettings:
        """Read ``TRYGG_CENTER_<FIELD>`` variables; explicit ``overrides`` win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(str(exc)) from exc
