"""What a benchmark reads from the running parts without disturbing them.

The centre and the gateway push no notice when a row is stored, so the benchmarks read their
databases over read-only connections (SQLite WAL lets a reader poll while the writer writes)
and read the gateway's memory from ``/proc``. Polling loops take an explicit interval and a
deadline; the interval bounds the measurement's error and is printed with the figures.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from gateway.outbox import open_read_only

T = TypeVar("T")


class ProbeTimeout(RuntimeError):
    pass


def poll_until(
    probe: Callable[[], T | None], *, timeout_s: float, interval_s: float, what: str
) -> T:
    """Call ``probe`` until it returns a value; ``interval_s`` 0 polls in a tight loop."""
    deadline = time.perf_counter() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.perf_counter() > deadline:
            raise ProbeTimeout(f"{what} not seen within {timeout_s} s")
        if interval_s > 0:
            time.sleep(interval_s)


@dataclass(frozen=True, slots=True)
class StoredRow:
    id: int
    type: str
    recorded_at: datetime
    """The gateway's clock when it wrote the event (before its commit), in ms."""
    received_at: datetime
    """The centre's clock when it began storing the event (before its commit), in ms."""


def _aware(value: Any) -> datetime:
    """SQLite hands back the centre's UTC timestamps as naive text; PostgreSQL as datetimes."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class CentreReader:
    """Read-only queries on the centre's database (SQLite file or PostgreSQL)."""

    def __init__(self, database_url: str) -> None:
        if database_url.startswith("sqlite:///"):
            path = database_url.removeprefix("sqlite:///")
            self._conn: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            self._conn.execute("PRAGMA query_only = ON")
            self._mark = "?"
        else:
            dsn = re.sub(r"^postgresql\+psycopg://", "postgresql://", database_url)
            self._conn = psycopg.connect(dsn, autocommit=True)
            self._mark = "%s"

    def _all(self, sql: str, *params: Any) -> list[Any]:
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql.replace("?", self._mark), params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def last_event_id(self) -> int:
        return int(self._all("SELECT coalesce(max(id), 0) FROM events")[0][0])

    def events_after(self, after_id: int, limit: int = 50) -> list[StoredRow]:
        rows = self._all(
            "SELECT id, type, recorded_at, received_at FROM events"
            " WHERE id > ? ORDER BY id LIMIT ?",
            after_id,
            limit,
        )
        return [StoredRow(int(r[0]), str(r[1]), _aware(r[2]), _aware(r[3])) for r in rows]

    def count_events_after(self, after_id: int, type_prefix: str = "") -> int:
        rows = self._all(
            "SELECT count(*) FROM events WHERE id > ? AND type LIKE ?", after_id, type_prefix + "%"
        )
        return int(rows[0][0])

    def close(self) -> None:
        self._conn.close()


class GatewayReader:
    """Read-only queries on the gateway's outbox while the daemon writes to it."""

    def __init__(self, database: Path) -> None:
        self._conn = open_read_only(database)

    def last_row_id(self) -> int:
        return int(self._conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])

    def alarms_after(self, after_id: int) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM outbox WHERE id > ? AND class = 'alarm'", (after_id,)
        ).fetchone()
        return int(row[0])

    def undelivered(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM outbox WHERE state IN ('queued', 'in_flight')"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mb: float
    hwm_mb: float


def memory_of(pid: int) -> Memory:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return Memory(values["VmRSS"], values["VmHWM"])


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class LineClock:
    """A LocalSite log sink that notes when chosen lines first appear after ``arm()``.

    Lines are kept as a short tail for error messages; ``echo`` forwards them to stderr.
    """

    patterns: dict[str, str]
    echo: Callable[[str, str], None] | None = None
    seen: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self) -> None:
        with self._lock:
            self.seen.clear()

    def __call__(self, name: str, line: str) -> None:
        now = time.perf_counter()
        for key, text in self.patterns.items():
            if text in line:
                with self._lock:
                    self.seen.setdefault(key, now)
        if self.echo is not None:
            self.echo(name, line)
