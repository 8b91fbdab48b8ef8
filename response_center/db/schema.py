"""The centre's tables, in SQLAlchemy Core (no ORM): the one description queries are built from.

The Alembic revisions under ``migrations/`` create exactly this schema; a test compares the
two on SQLite and PostgreSQL, so neither can drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ALARM_STATES = ("new", "acknowledged", "resolved")
ROLES = ("operator", "nurse", "installer", "admin")
GATEWAY_STATUSES = ("active", "revoked")
COMMAND_OPS = ("add", "remove", "rename", "move")
COMMAND_STATES = ("pending", "delivered", "applied", "failed")
DEVICE_STATES = ("online", "offline", "silent", "unknown")
APPEND_ONLY_TABLES = ("alarm_transitions", "audit_log", "security_events")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit keys on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY."""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


municipalities = Table(
    "municipalities",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(16), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

homes = Table(
    "homes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("municipality_id", Integer, ForeignKey("municipalities.id"), nullable=False),
    Column("ref", String(64), nullable=False),
    Column("address", String(300), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("municipality_id", "ref"),
)

residents = Table(
    "residents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("home_id", Integer, ForeignKey("homes.id"), nullable=False),
    Column("ref", String(128), nullable=True),
    Column("display_name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("home_id", "ref"),
)

gateways = Table(
    "gateways",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("municipality_id", Integer, ForeignKey("municipalities.id"), nullable=False),
    Column("home_id", Integer, ForeignKey("homes.id"), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("kid", String(64), nullable=False, unique=True),
    Column("hostname", String(128), nullable=True),
    Column("status", String(16), nullable=False),
    Column("enrolled_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("highest_seq", BigInteger, nullable=False),
    Column("last_boot_id", String(128), nullable=True),
    Column("last_event_at", UtcDateTime, nullable=True),
    Column("last_heartbeat_at", UtcDateTime, nullable=True),
    Column("last_heartbeat_sent_at", UtcDateTime, nullable=True),
    Column("offline", Boolean, nullable=False),
    Column("offline_since", UtcDateTime, nullable=True),
    CheckConstraint(_in("status", GATEWAY_STATUSES), name="status"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("gateway_id", String(32), ForeignKey("gateways.id"), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("profile", String(128), nullable=True),
    Column("room", String(128), nullable=True),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("gateway_id", "device_id"),
)

enrolment_codes = Table(
    "enrolment_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("municipality_id", Integer, ForeignKey("municipalities.id"), nullable=False),
    Column("home_id", Integer, ForeignKey("homes.id"), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("used_by_gateway", String(32), ForeignKey("gateways.id"), nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("gateway_id", String(32), ForeignKey("gateways.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("boot_id", String(128), nullable=False),
    Column("class", String(16), nullable=False),
    Column("type", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("resident_ref", String(128), nullable=True),
    Column("device_id", String(128), nullable=True),
    Column("vkp_alert_code", String(16), nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("stored_at", String(32), nullable=False),
    Column("clock_skew", Boolean, nullable=False),
    Column("body", Text, nullable=False),
    Column("sig", Text, nullable=False),
    UniqueConstraint("gateway_id", "seq"),
)

alarms = Table(
    "alarms",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("event_id", String(36), ForeignKey("events.event_id"), nullable=True, unique=True),
    Column("gateway_id", String(32), ForeignKey("gateways.id"), nullable=True),
    Column("municipality_id", Integer, ForeignKey("municipalities.id"), nullable=False),
    Column("home_id", Integer, ForeignKey("homes.id"), nullable=True),
    Column("resident_id", Integer, ForeignKey("residents.id"), nullable=True),
    Column("type", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("vkp_alert_code", String(16), nullable=True),
    Column("device_id", String(128), nullable=True),
    Column("room", String(128), nullable=True),
    Column("state", String(16), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("acknowledged_by", String(64), nullable=True),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Column("outcome", String(40), nullable=True),
    Column("note", Text, nullable=True),
    Column("age_at_arrival_s", BigInteger, nullable=False),
    Column("clock_skew", Boolean, nullable=False),
    CheckConstraint(_in("state", ALARM_STATES), name="state"),
    Index(None, "municipality_id", "state", "priority", "opened_at"),
)

alarm_transitions = Table(
    "alarm_transitions",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("alarm_id", BigId, ForeignKey("alarms.id"), nullable=False, index=True),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("note", Text, nullable=True),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint(_in("role", ROLES), name="role"),
)

user_municipalities = Table(
    "user_municipalities",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("municipality_id", Integer, ForeignKey("municipalities.id"), nullable=False),
    PrimaryKeyConstraint("user_id", "municipality_id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("csrf_hash", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("source_ip", String(64), nullable=True),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("username", String(64), nullable=False),
    Column("source_ip", String(64), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("window_started_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("username", "source_ip"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("municipality_id", Integer, nullable=True),
    Column("home_id", Integer, nullable=True),
    Column("resident_id", Integer, nullable=True, index=True),
    Column("alarm_id", BigInteger, nullable=True),
    Column("purpose", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text, nullable=True),
)

security_events = Table(
    "security_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("gateway_id", String(32), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Index(None, "source_ip", "at"),
)


# --- the installation of a home (response_center/installations.py) --------------------------

installation_devices = Table(
    "installation_devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("gateway_id", String(32), ForeignKey("gateways.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("ieee", String(18), nullable=True),
    Column("profile", String(128), nullable=True),
    Column("model", String(64), nullable=True),
    Column("room", String(64), nullable=True),
    Column("place", String(128), nullable=True),
    Column("allow_listed", Boolean, nullable=False),
    Column("status", String(16), nullable=True),
    Column("reason", String(200), nullable=True),
    Column("state", String(16), nullable=False),
    Column("battery", SmallInteger, nullable=True),
    Column("linkquality", SmallInteger, nullable=True),
    Column("last_seen_at", UtcDateTime, nullable=True),
    Column("reported_at", UtcDateTime, nullable=False),
    UniqueConstraint("gateway_id", "name"),
    CheckConstraint(_in("state", DEVICE_STATES), name="state"),
)

installation_reports = Table(
    "installation_reports",
    metadata,
    Column("gateway_id", String(32), ForeignKey("gateways.id"), primary_key=True),
    Column("inventory_digest", String(64), nullable=True),
    Column("inventory_at", UtcDateTime, nullable=True),
    Column("inventory_truncated", Boolean, nullable=False),
    Column("test_event_id", String(36), nullable=True),
    Column("test_rtt_ms", Integer, nullable=True),
    Column("test_receipt", String(16), nullable=True),
    Column("test_reported_at", UtcDateTime, nullable=True),
)

device_commands = Table(
    "device_commands",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("gateway_id", String(32), ForeignKey("gateways.id"), nullable=False),
    Column("municipality_id", Integer, ForeignKey("municipalities.id"), nullable=False),
    Column("home_id", Integer, ForeignKey("homes.id"), nullable=False),
    Column("op", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("params", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("reason", String(200), nullable=True),
    CheckConstraint(_in("op", COMMAND_OPS), name="op"),
    CheckConstraint(_in("state", COMMAND_STATES), name="state"),
    Index(None, "gateway_id", "state"),
)
