"""What ``trygg gateway status`` shows: identity, enrolment and the outbox's health.

Works while the daemon runs: the database is opened read-only (WAL lets a reader in beside
the one writer), and nothing here writes anywhere.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.config import DATABASE_FILE, SIGNING_KEY_FILE
from gateway.identity import Enrolment, IdentityError, load_enrolment, load_signing_key
from gateway.outbox import STATES, OutboxStats, open_read_only, query_stats
from trygg.wire.clock import Clock, format_ts, parse_ts, system_clock
from trygg.wire.jws import key_id


@dataclass(frozen=True)
class GatewayStatus:
    state_dir: Path
    generated_at: datetime
    initialised: bool
    kid: str | None
    enrolment: Enrolment | None
    outbox: OutboxStats | None
    problems: tuple[str, ...]
    """Things that could not be read, as sentences (never a traceback)."""

    def to_json(self) -> dict[str, Any]:
        enrolment = None
        if self.enrolment is not None:
            enrolment = self.enrolment.model_dump(mode="json", exclude={"center_public_key"})
        return {
            "state_dir": str(self.state_dir),
            "generated_at": format_ts(self.generated_at),
            "initialised": self.initialised,
            "kid": self.kid,
            "enrolment": enrolment,
            "outbox": None if self.outbox is None else self.outbox.to_json(),
            "problems": list(self.problems),
        }


def collect_status(state_dir: Path, clock: Clock = system_clock) -> GatewayStatus:
    """Read everything status shows; problems are collected, not raised."""
    now = clock()
    problems: list[str] = []
    initialised = (state_dir / SIGNING_KEY_FILE).exists()
    kid = None
    if initialised:
        try:
            kid = key_id(load_signing_key(state_dir).public_key())
        except IdentityError as exc:
            problems.append(str(exc))
    enrolment = None
    try:
        enrolment = load_enrolment(state_dir)
    except IdentityError as exc:
        problems.append(str(exc))
    outbox = None
    database = state_dir / DATABASE_FILE
    if database.exists():
        try:
            conn = open_read_only(database)
            try:
                outbox = query_stats(conn, now)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            problems.append(f"cannot read the outbox database {database}: {exc}")
    return GatewayStatus(state_dir, now, initialised, kid, enrolment, outbox, tuple(problems))


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _ago(timestamp: str | None, now: datetime) -> str:
    if timestamp is None:
        return "never"
    age = max(0, int((now - parse_ts(timestamp)).total_seconds()))
    return f"{timestamp} ({_duration(age)} ago)"


def _outbox_lines(stats: OutboxStats, now: datetime) -> list[str]:
    lines = [
        f"  queued:          {stats.depth} waiting, {stats.alarms_queued} of them alarms",
        "  oldest queued:   "
        + ("-" if stats.oldest_queued_age_s is None else _duration(stats.oldest_queued_age_s)),
        f"  last delivery:   {_ago(stats.last_delivery_at, now)}",
    ]
    dead = f"  dead rows:       {stats.dead}"
    if stats.dead_alarms:
        dead += f"  ** {stats.dead_alarms} ALARM(S) REJECTED BY THE CENTRE **"
    lines.append(dead)
    evicted = ", ".join(f"{k} {n}" for k, n in sorted(stats.evicted_by_class.items()))
    lines.append(f"  evicted:         {stats.evicted_total}" + (f" ({evicted})" if evicted else ""))
    lines.append(f"  stored:          {stats.rows_used} rows, {_bytes(stats.bytes_used)}")
    lines.append(f"  seq:             {stats.seq} (boot {stats.boot_id or '-'})")
    if stats.by_class:
        lines.append("")
        lines.append("  " + f"{'class':<12}" + "".join(f"{s:>11}" for s in STATES))
        for klass, by_state in sorted(stats.by_class.items()):
            counts = "".join(f"{by_state.get(s, 0):>11}" for s in STATES)
            lines.append(f"  {klass:<12}{counts}")
    return lines


def format_status(status: GatewayStatus) -> str:
    """The human-readable report, one fact per line."""
    now = status.generated_at
    lines = [f"Trygg gateway in {status.state_dir}"]
    if not status.initialised:
        lines.append("  signing key:     none (run 'trygg gateway init')")
    else:
        lines.append(f"  signing key:     {status.kid or 'unreadable'}")
    enrolment = status.enrolment
    if enrolment is None:
        lines.append("  enrolment:       not enrolled (run 'trygg gateway enroll')")
    else:
        lines.append(f"  enrolment:       {enrolment.gateway_id} at {enrolment.center_url}")
        lines.append(
            f"  home:            {enrolment.home} in municipality {enrolment.municipality}"
        )
        lines.append(f"  enrolled at:     {enrolment.enrolled_at}")
    lines.append("")
    lines.append("Outbox")
    if status.outbox is None:
        lines.append("  no database yet (the gateway has not run)")
    else:
        lines.extend(_outbox_lines(status.outbox, now))
    for problem in status.problems:
        lines.append(f"problem: {problem}")
    return "\n".join(lines) + "\n"
