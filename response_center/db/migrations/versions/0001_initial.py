"""Initial schema: tenants, homes, gateways, events, alarms, users, sessions, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("alarm_transitions", "audit_log", "security_events")


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_id() -> sa.Column[Any]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"))


def upgrade() -> None:
    op.create_table(
        "municipalities",
        sa.Column("id", sa.Integer()),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_municipalities"),
        sa.UniqueConstraint("code", name="uq_municipalities_code"),
    )
    op.create_table(
        "homes",
        sa.Column("id", sa.Integer()),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_homes"),
        sa.ForeignKeyConstraint(
            ["municipality_id"],
            ["municipalities.id"],
            name="fk_homes_municipality_id_municipalities",
        ),
        sa.UniqueConstraint("municipality_id", "ref", name="uq_homes_municipality_id_ref"),
    )
    op.create_table(
        "residents",
        sa.Column("id", sa.Integer()),
        sa.Column("home_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(128), nullable=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_residents"),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"], name="fk_residents_home_id_homes"),
        sa.UniqueConstraint("home_id", "ref", name="uq_residents_home_id_ref"),
    )
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.Column("home_id", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("enrolled_at"),
        _ts("revoked_at", nullable=True),
        sa.Column("highest_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_boot_id", sa.String(128), nullable=True),
        _ts("last_event_at", nullable=True),
        _ts("last_heartbeat_at", nullable=True),
        _ts("last_heartbeat_sent_at", nullable=True),
        sa.Column("offline", sa.Boolean(), nullable=False),
        _ts("offline_since", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gateways"),
        sa.ForeignKeyConstraint(
            ["municipality_id"],
            ["municipalities.id"],
            name="fk_gateways_municipality_id_municipalities",
        ),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"], name="fk_gateways_home_id_homes"),
        sa.UniqueConstraint("kid", name="uq_gateways_kid"),
        sa.CheckConstraint("status IN ('active', 'revoked')", name="ck_gateways_status"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer()),
        sa.Column("gateway_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("profile", sa.String(128), nullable=True),
        sa.Column("room", sa.String(128), nullable=True),
        _ts("first_seen_at"),
        _ts("last_seen_at"),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_devices_gateway_id_gateways"
        ),
        sa.UniqueConstraint("gateway_id", "device_id", name="uq_devices_gateway_id_device_id"),
    )
    op.create_table(
        "enrolment_codes",
        sa.Column("id", sa.Integer()),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.Column("home_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        sa.Column("used_by_gateway", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_enrolment_codes"),
        sa.ForeignKeyConstraint(
            ["municipality_id"],
            ["municipalities.id"],
            name="fk_enrolment_codes_municipality_id_municipalities",
        ),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"], name="fk_enrolment_codes_home_id_homes"),
        sa.ForeignKeyConstraint(
            ["used_by_gateway"],
            ["gateways.id"],
            name="fk_enrolment_codes_used_by_gateway_gateways",
        ),
        sa.UniqueConstraint("code_hash", name="uq_enrolment_codes_code_hash"),
    )
    op.create_table(
        "events",
        _big_id(),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("gateway_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("boot_id", sa.String(128), nullable=False),
        sa.Column("class", sa.String(16), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("resident_ref", sa.String(128), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("vkp_alert_code", sa.String(16), nullable=True),
        _ts("occurred_at"),
        _ts("recorded_at"),
        _ts("received_at"),
        sa.Column("stored_at", sa.String(32), nullable=False),
        sa.Column("clock_skew", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sig", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_events_gateway_id_gateways"
        ),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.UniqueConstraint("gateway_id", "seq", name="uq_events_gateway_id_seq"),
    )
    op.create_table(
        "alarms",
        _big_id(),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("gateway_id", sa.String(32), nullable=True),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.Column("home_id", sa.Integer(), nullable=True),
        sa.Column("resident_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("vkp_alert_code", sa.String(16), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("room", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        _ts("occurred_at"),
        _ts("opened_at"),
        _ts("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        _ts("resolved_at", nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("age_at_arrival_s", sa.BigInteger(), nullable=False),
        sa.Column("clock_skew", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alarms"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name="fk_alarms_event_id_events"
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_alarms_gateway_id_gateways"
        ),
        sa.ForeignKeyConstraint(
            ["municipality_id"],
            ["municipalities.id"],
            name="fk_alarms_municipality_id_municipalities",
        ),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"], name="fk_alarms_home_id_homes"),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name="fk_alarms_resident_id_residents"
        ),
        sa.UniqueConstraint("event_id", name="uq_alarms_event_id"),
        sa.CheckConstraint("state IN ('new', 'acknowledged', 'resolved')", name="ck_alarms_state"),
    )
    op.create_index(
        "ix_alarms_municipality_id_state_priority_opened_at",
        "alarms",
        ["municipality_id", "state", "priority", "opened_at"],
    )
    op.create_table(
        "alarm_transitions",
        _big_id(),
        sa.Column("alarm_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        _ts("at"),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alarm_transitions"),
        sa.ForeignKeyConstraint(
            ["alarm_id"], ["alarms.id"], name="fk_alarm_transitions_alarm_id_alarms"
        ),
    )
    op.create_index("ix_alarm_transitions_alarm_id", "alarm_transitions", ["alarm_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer()),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint(
            "role IN ('operator', 'nurse', 'installer', 'admin')", name="ck_users_role"
        ),
    )
    op.create_table(
        "user_municipalities",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "municipality_id", name="pk_user_municipalities"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_user_municipalities_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["municipality_id"],
            ["municipalities.id"],
            name="fk_user_municipalities_municipality_id_municipalities",
        ),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer()),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("csrf_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        sa.Column("source_ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_sessions_user_id_users"),
        sa.UniqueConstraint("token_hash", name="uq_sessions_token_hash"),
    )
    op.create_table(
        "login_throttle",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("source_ip", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _ts("window_started_at"),
        _ts("locked_until", nullable=True),
        sa.PrimaryKeyConstraint("username", "source_ip", name="pk_login_throttle"),
    )
    op.create_table(
        "audit_log",
        _big_id(),
        _ts("at"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=True),
        sa.Column("home_id", sa.Integer(), nullable=True),
        sa.Column("resident_id", sa.Integer(), nullable=True),
        sa.Column("alarm_id", sa.BigInteger(), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_resident_id", "audit_log", ["resident_id"])
    op.create_table(
        "security_events",
        _big_id(),
        _ts("at"),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(32), nullable=True),
        sa.Column("source_ip", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_security_events"),
    )
    op.create_index("ix_security_events_source_ip_at", "security_events", ["source_ip", "at"])
    _append_only_triggers()


def _append_only_triggers() -> None:
    """History and logs are evidence: the database itself refuses to change or delete them."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION trygg_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION trygg_append_only()"
            )
        elif dialect == "sqlite":
            for verb in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        elif dialect == "sqlite":
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS trygg_append_only()")
    for table in (
        "security_events",
        "audit_log",
        "login_throttle",
        "sessions",
        "user_municipalities",
        "users",
        "alarm_transitions",
        "alarms",
        "events",
        "enrolment_codes",
        "devices",
        "gateways",
        "residents",
        "homes",
        "municipalities",
    ):
        op.drop_table(table)
