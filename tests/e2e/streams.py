"""Helpers for the crash and outage tests: presses told apart end to end, and what each side holds.

A press is identified by Z2M's ``last_seen``, which the rules take as the event's
``occurred_at``: press ``n`` is published with ``last_seen = base + n ms``, so the event the
centre stores names the press it came from, through the broker, the gateway's pipeline,
outbox, signature and uplink. The centre's database is read with a plain engine (no
``BEGIN IMMEDIATE``), so polling never takes the write lock the centre's ingest needs.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select

from drivers.simulators.zigbee_home import ZigbeeHome
from gateway.config import DATABASE_FILE
from gateway.outbox import OutboxStats, open_read_only, query_stats
from response_center.db.schema import alarms, events
from response_center.settings import normalise_database_url
from trygg.wire.clock import format_ts, parse_ts


class NumberedPresses:
    """Button presses at QoS 1 whose number survives into the centre's stored event."""

    def __init__(self, home: ZigbeeHome, base: datetime | None = None) -> None:
        self.home = home
        # An hour back: last_seen must not lie in the future of the gateway's clock.
        self.base = base or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.accepted: list[int] = []
        """Presses whose PUBLISH the broker acknowledged (PUBACK), in publishing order."""

    def last_seen(self, number: int) -> str:
        return format_ts(self.base + timedelta(milliseconds=number))

    def number_of(self, occurred_at: str) -> int:
        """The press an event's ``occurred_at`` names (-1 if it names none)."""
        delta = parse_ts(occurred_at) - self.base
        number = int(delta / timedelta(milliseconds=1))
        return number if self.last_seen(number) == format_ts(parse_ts(occurred_at)) else -1

    async def press(self) -> int:
        """Publish the next press; it counts as accepted once the publish has its PUBACK."""
        number = len(self.accepted) + 1
        body = {
            "action": "single",
            "battery": 100,
            "voltage": 3005,
            "linkquality": 96,
            "last_seen": self.last_seen(number),
        }
        await self.home.publish(self.home.button.friendly_name, json.dumps(body))
        self.accepted.append(number)
        return number


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the centre's events table, with what the signed body says."""

    id: int
    event_id: str
    seq: int
    event_class: str
    type: str
    occurred_at: str
    received_at: datetime


class CentreView:
    """Read-only queries on the centre's database while the centre runs."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(normalise_database_url(database_url))

    def close(self) -> None:
        self.engine.dispose()

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    def count_alarm_events(self) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(events).where(events.c["class"] == "alarm")
            return int(conn.execute(query).scalar_one())

    def events(self) -> list[StoredEvent]:
        """Every stored event in the order the centre stored them (row id)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    events.c.id,
                    events.c.event_id,
                    events.c.seq,
                    events.c["class"],
                    events.c.type,
                    events.c.body,
                    events.c.received_at,
                ).order_by(events.c.id)
            )
            return [
                StoredEvent(
                    id=int(r.id),
                    event_id=str(r.event_id),
                    seq=int(r.seq),
                    event_class=str(r[3]),
                    type=str(r.type),
                    # The signed body, not the column: what the gateway itself recorded.
                    occurred_at=str(json.loads(r.body)["occurred_at"]),
                    received_at=r.received_at,
                )
                for r in rows
            ]

    def alarm_event_ids(self) -> list[str]:
        """The event id behind each alarm opened from an event (supervision alarms have none)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(alarms.c.event_id).where(alarms.c.event_id.is_not(None)))
            return [str(r.event_id) for r in rows]


def gateway_outbox(state_dir: Path) -> OutboxStats:
    """The gateway's outbox figures, read from its database as ``trygg gateway status`` does."""
    conn = open_read_only(state_dir / DATABASE_FILE)
    try:
        return query_stats(conn, datetime.now(UTC))
    finally:
        conn.close()


def gateway_event_ids(state_dir: Path) -> dict[str, str]:
    """Every event id the gateway's outbox holds, with its state."""
    conn = open_read_only(state_dir / DATABASE_FILE)
    try:
        rows = conn.execute("SELECT event_id, state FROM outbox").fetchall()
    except sqlite3.Error as exc:
        raise AssertionError(f"cannot read the gateway outbox: {exc}") from exc
    finally:
        conn.close()
    return {str(event_id): str(state) for event_id, state in rows}


def repeated(values: Iterable[int]) -> dict[int, int]:
    """Values seen more than once, with how often."""
    return {value: n for value, n in Counter(values).items() if n > 1}


class LogWatch:
    """A LocalSite log sink that counts lines matching named patterns, and can wait for one."""

    def __init__(self, patterns: dict[str, str]) -> None:
        self._patterns = {name: re.compile(pattern) for name, pattern in patterns.items()}
        self._counts: Counter[str] = Counter()
        self._changed = threading.Condition()

    def __call__(self, process: str, line: str) -> None:
        for name, pattern in self._patterns.items():
            if pattern.search(line):
                with self._changed:
                    self._counts[name] += 1
                    self._changed.notify_all()

    def count(self, name: str) -> int:
        with self._changed:
            return self._counts[name]

    def wait_beyond(self, name: str, seen: int, timeout: float) -> int:
        """Block until more than ``seen`` lines matched ``name``; return the new count."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._counts[name] > seen, timeout):
                raise AssertionError(f"no new '{name}' line within {timeout}s")
            return self._counts[name]
