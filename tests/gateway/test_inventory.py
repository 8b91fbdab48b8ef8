"""The device inventory tables and the installer's read API, on a real database file."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlite_utils

from gateway.ingest_state import MIGRATIONS
from gateway.inventory import (
    DeviceHealth,
    NetworkDevice,
    forget_health,
    load_health,
    load_network,
    read_inventory,
    save_health,
    save_network_device,
)
from gateway.outbox import apply_migrations, open_read_only

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

BUTTON = NetworkDevice(
    ieee="0x00158d00045a1b2c",
    friendly_name="bedroom/button",
    interview="successful",
    in_network=True,
    match="matched",
    status="trusted",
    reason="allow-listed as aqara.WXKG11LM; the fingerprint matches",
    first_seen_at=NOW,
    updated_at=NOW,
    type="EndDevice",
    model="WXKG11LM",
    vendor="Aqara",
    model_id="lumi.sensor_switch.aq2",
    manufacturer="LUMI",
    date_code="20161129",
    power_source="Battery",
    supported=True,
    profile="aqara.WXKG11LM",
    allowed_name="bedroom/button",
    allowed_profile="aqara.WXKG11LM",
)
STRANGER = NetworkDevice(
    ieee="0x00158d0001e2f3a4",
    friendly_name="0x00158d0001e2f3a4",
    interview="successful",
    in_network=True,
    match="no_profile",
    status="unknown",
    reason="not allow-listed; no Trygg profile for Aqara WSDCGQ11LM",
    first_seen_at=NOW,
    updated_at=NOW,
    model="WSDCGQ11LM",
    vendor="Aqara",
    supported=True,
    reported="technical.unknown_device",
)


def migrated(path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA journal_mode = WAL")
    apply_migrations(db, MIGRATIONS, "2026-11-22T08:00:00.000Z")
    return db


def test_read_inventory_joins_network_and_health_read_only(tmp_path: Path) -> None:
    db = migrated(tmp_path / "gw.sqlite")
    with db.atomic():
        save_network_device(db, BUTTON)
        save_network_device(db, STRANGER)
        save_health(
            db,
            DeviceHealth(
                device="bedroom/button",
                updated_at=NOW,
                ieee=BUTTON.ieee,
                profile="aqara.WXKG11LM",
                room="bedroom",
                last_heard_at=NOW - timedelta(minutes=5),
                availability="online",
                battery=Decimal(18),
                battery_low=True,
                linkquality=81,
                raised=frozenset({"battery_low"}),
            ),
        )
        # Allow-listed, not listed by Zigbee2MQTT yet: still shown, as pending.
        save_health(db, DeviceHealth(device="hall/door", updated_at=NOW, profile="aqara.MCCGQ11LM"))
    reader = open_read_only(tmp_path / "gw.sqlite")
    try:
        stranger, button, door = read_inventory(reader)
    finally:
        reader.close()
    assert (button.status, button.profile, button.room) == ("trusted", "aqara.WXKG11LM", "bedroom")
    assert button.battery == Decimal(18) and button.battery_low is True
    assert button.last_seen_at == NOW - timedelta(minutes=5)
    assert button.conditions == {"battery_low"}
    assert (stranger.status, stranger.match, stranger.reported) == (
        "unknown",
        "no_profile",
        "technical.unknown_device",
    )
    assert stranger.battery is None and stranger.allowed_name is None
    assert (door.friendly_name, door.status, door.in_network, door.ieee) == (
        "hall/door",
        "pending",
        False,
        None,
    )


def test_rows_round_trip_and_unchanged_rows_compare_equal(tmp_path: Path) -> None:
    db = migrated(tmp_path / "gw.sqlite")
    save_network_device(db, BUTTON)
    loaded = load_network(db)[BUTTON.ieee]
    assert loaded == BUTTON
    assert loaded.same_as(BUTTON) and BUTTON.same_as(loaded)
    assert replace(BUTTON, updated_at=NOW + timedelta(hours=1)).same_as(BUTTON)
    assert not replace(BUTTON, status="left").same_as(BUTTON)
    health = DeviceHealth(device="d", updated_at=NOW, tamper=False, raised=frozenset({"tamper"}))
    save_health(db, health)
    assert load_health(db) == {"d": health}
    assert forget_health(db, keep=["other"]) == 1
    assert load_health(db) == {}


def test_a_database_without_the_tables_reads_as_empty(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "old.sqlite")
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY)")
    assert read_inventory(db) == []


def test_upgrade_carries_device_availability_over(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "gw.sqlite")
    apply_migrations(db, MIGRATIONS[:1], "2026-11-22T08:00:00.000Z")
    db.execute(
        "INSERT INTO ingest_availability VALUES"
        " ('device:hall/door', 'offline', 'offline', '2026-11-22T07:00:00.000Z'),"
        " ('device:bedroom/button', 'online', 'online', '2026-11-22T07:00:00.000Z'),"
        " ('bridge', 'online', 'online', '2026-11-22T07:00:00.000Z')"
    )
    apply_migrations(db, MIGRATIONS, "2026-11-22T08:00:00.000Z")
    health = load_health(db)
    assert health["hall/door"].raised == {"offline"}
    assert health["hall/door"].availability == "offline"
    assert health["bedroom/button"].raised == frozenset()
    remaining = db.execute("SELECT subject FROM ingest_availability").fetchall()
    assert remaining == [("bridge",)]
