"""What MQTT ingest must remember across restarts, in the outbox's database.

- ``ingest_device_state``: each device's remembered rule state (``contact``, an enum such
  as ``fall_down_status``, a threshold side), so a door that was open before a restart
  does not raise "opened" again, and one that closed while we were away does raise "closed".
- ``ingest_availability``: what was last *raised* for the bridge (online/offline) and what
  was last *observed*, so each change is raised once and cleared once. (Devices' own
  availability moved to ``device_supervision``, see ``gateway.inventory``.)
- ``mqtt_received``: one row per MQTT message that produced events, written in the same
  transaction as those events: ``(mid, topic, sha256(payload))``. When a crash falls
  between that commit and the PUBACK, the broker resends the message with DUP=1 and the
  same packet id; finding the row tells the pipeline it is already stored.

All functions run in the outbox's writer thread (inside ``Outbox.run`` or a commit's
``also``); none opens a transaction itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlite_utils

from firmware_profiles.rules import StateValue
from gateway import inventory
from gateway.outbox import Migration
from trygg.wire.clock import format_ts

Availability = Literal["online", "offline"]

ACKED_RETENTION = timedelta(days=1)
"""Acknowledged rows are kept this long: a PUBACK lost with its connection makes the
broker resend, and the row still recognises the message."""

UNACKED_RETENTION = timedelta(days=7)
"""Rows never marked acknowledged: the broker resends these whenever we return."""

BRIDGE = "bridge"
"""The ``ingest_availability`` subject of the Zigbee2MQTT bridge itself."""


def _create_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE ingest_device_state ("
        " device TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE ingest_availability ("
        " subject TEXT PRIMARY KEY,"
        " reported TEXT CHECK (reported IN ('online', 'offline')),"
        " observed TEXT CHECK (observed IN ('online', 'offline')),"
        " updated_at TEXT NOT NULL)"
    )
    # One row per packet id: the broker never has two messages in flight to us with the
    # same id, so a newer message with an id replaces the older row.
    db.execute(
        "CREATE TABLE mqtt_received ("
        " mid INTEGER PRIMARY KEY, topic TEXT NOT NULL, sha256 TEXT NOT NULL,"
        " received_at TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("CREATE INDEX mqtt_received_age ON mqtt_received (acked, received_at)")


MIGRATIONS: tuple[Migration, ...] = (("ingest.v1", _create_v1), *inventory.MIGRATIONS)
"""Pass to ``Outbox.open(migrations=...)`` or register each with the open outbox; includes
the device inventory and supervision tables (``gateway.inventory``)."""


@dataclass(frozen=True, slots=True)
class AvailabilityRecord:
    reported: Availability | None
    observed: Availability | None


@dataclass(frozen=True, slots=True)
class ReceivedRecord:
    topic: str
    sha256: str


# --- device edge state --------------------------------------------------------------------


def load_device_states(db: sqlite_utils.Database) -> dict[str, dict[str, StateValue]]:
    """Every device's remembered rule state; unreadable rows and values count as unknown."""
    states: dict[str, dict[str, StateValue]] = {}
    for device, text in db.execute("SELECT device, state FROM ingest_device_state").fetchall():
        try:
            raw = json.loads(text)
        except ValueError:
            continue
        if isinstance(raw, dict):
            states[str(device)] = {
                str(k): v for k, v in raw.items() if isinstance(v, bool | int | str)
            }
    return states


def save_device_state(
    db: sqlite_utils.Database, device: str, state: Mapping[str, StateValue], now: datetime
) -> None:
    db.execute(
        "INSERT INTO ingest_device_state (device, state, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (device) DO UPDATE SET state = excluded.state,"
        " updated_at = excluded.updated_at",
        (device, json.dumps(dict(state), sort_keys=True), format_ts(now)),
    )


# --- availability ---------------------------------------------------------------------------


def _availability(value: object) -> Availability | None:
    if value == "online":
        return "online"
    if value == "offline":
        return "offline"
    return None


def load_availability(db: sqlite_utils.Database) -> dict[str, AvailabilityRecord]:
    rows = db.execute("SELECT subject, reported, observed FROM ingest_availability").fetchall()
    return {
        str(subject): AvailabilityRecord(_availability(reported), _availability(observed))
        for subject, reported, observed in rows
    }


def save_availability(
    db: sqlite_utils.Database, subject: str, record: AvailabilityRecord, now: datetime
) -> None:
    db.execute(
        "INSERT INTO ingest_availability (subject, reported, observed, updated_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET"
        " reported = excluded.reported, observed = excluded.observed,"
        " updated_at = excluded.updated_at",
        (subject, record.reported, record.observed, format_ts(now)),
    )


# --- received messages -----------------------------------------------------------------------


def record_received(
    db: sqlite_utils.Database, *, mid: int, topic: str, sha256: str, now: datetime
) -> None:
    """Remember a message whose events are in this same transaction (not yet acked)."""
    db.execute(
        "INSERT INTO mqtt_received (mid, topic, sha256, received_at, acked)"
        " VALUES (?, ?, ?, ?, 0) ON CONFLICT (mid) DO UPDATE SET topic = excluded.topic,"
        " sha256 = excluded.sha256, received_at = excluded.received_at, acked = 0",
        (mid, topic, sha256, format_ts(now)),
    )


def mark_acked(db: sqlite_utils.Database, acked: Iterable[tuple[int, str]]) -> None:
    """Flag rows as acknowledged, by ``(mid, sha256)`` so a reused mid is left alone."""
    db.conn.executemany(
        "UPDATE mqtt_received SET acked = 1 WHERE mid = ? AND sha256 = ?", list(acked)
    )


def load_received(db: sqlite_utils.Database) -> dict[int, ReceivedRecord]:
    rows = db.execute("SELECT mid, topic, sha256 FROM mqtt_received").fetchall()
    return {int(mid): ReceivedRecord(str(topic), str(digest)) for mid, topic, digest in rows}


def forget_received(db: sqlite_utils.Database) -> int:
    """Forget every row: the broker has no session for us, so it will resend nothing.

    Without this, a broker that lost its state hands out packet ids from 1 again, and a
    fresh message that happens to match an old row (same id, topic and payload) would be
    taken for a resend of it if the gateway died before committing it.
    """
    return int(db.execute("DELETE FROM mqtt_received").rowcount)


def expire_received(db: sqlite_utils.Database, now: datetime) -> int:
    """Forget acknowledged rows after a day and the rest after a week; return how many."""
    cursor = db.execute(
        "DELETE FROM mqtt_received WHERE (acked = 1 AND received_at < ?) OR received_at < ?",
        (format_ts(now - ACKED_RETENTION), format_ts(now - UNACKED_RETENTION)),
    )
    return int(cursor.rowcount)
