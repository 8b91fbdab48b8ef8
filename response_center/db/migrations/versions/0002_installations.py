"""Installations: each gateway's reported devices, its last test alarm, and device commands.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "installation_devices",
        sa.Column("id", sa.Integer()),
        sa.Column("gateway_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("ieee", sa.String(18), nullable=True),
        sa.Column("profile", sa.String(128), nullable=True),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("room", sa.String(64), nullable=True),
        sa.Column("place", sa.String(128), nullable=True),
        sa.Column("allow_listed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("battery", sa.SmallInteger(), nullable=True),
        sa.Column("linkquality", sa.SmallInteger(), nullable=True),
        _ts("last_seen_at", nullable=True),
        _ts("reported_at"),
        sa.PrimaryKeyConstraint("id", name="pk_installation_devices"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_installation_devices_gateway_id_gateways"
        ),
        sa.UniqueConstraint("gateway_id", "name", name="uq_installation_devices_gateway_id_name"),
        sa.CheckConstraint(
            "state IN ('online', 'offline', 'silent', 'unknown')",
            name="ck_installation_devices_state",
        ),
    )
    op.create_table(
        "installation_reports",
        sa.Column("gateway_id", sa.String(32), nullable=False),
        sa.Column("inventory_digest", sa.String(64), nullable=True),
        _ts("inventory_at", nullable=True),
        sa.Column("inventory_truncated", sa.Boolean(), nullable=False),
        sa.Column("test_event_id", sa.String(36), nullable=True),
        sa.Column("test_rtt_ms", sa.Integer(), nullable=True),
        sa.Column("test_receipt", sa.String(16), nullable=True),
        _ts("test_reported_at", nullable=True),
        sa.PrimaryKeyConstraint("gateway_id", name="pk_installation_reports"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_installation_reports_gateway_id_gateways"
        ),
    )
    op.create_table(
        "device_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
        sa.Column("gateway_id", sa.String(32), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.Column("home_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("delivered_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_device_commands"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_device_commands_gateway_id_gateways"
        ),
        sa.ForeignKeyConstraint(
            ["municipality_id"],
            ["municipalities.id"],
            name="fk_device_commands_municipality_id_municipalities",
        ),
        sa.ForeignKeyConstraint(["home_id"], ["homes.id"], name="fk_device_commands_home_id_homes"),
        sa.CheckConstraint(
            "op IN ('add', 'remove', 'rename', 'move')", name="ck_device_commands_op"
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'applied', 'failed')",
            name="ck_device_commands_state",
        ),
    )
    op.create_index(
        "ix_device_commands_gateway_id_state", "device_commands", ["gateway_id", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_device_commands_gateway_id_state", table_name="device_commands")
    for table in ("device_commands", "installation_reports", "installation_devices"):
        op.drop_table(table)
