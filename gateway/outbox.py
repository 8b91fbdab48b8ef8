"""The gateway's durable outbox: every event is signed once and on disk before anyone is told.

One SQLite database (WAL, ``synchronous=FULL``, foreign keys) owned by one writer thread; the
asyncio loop never blocks on SQLite. Concurrent ``commit`` calls are written together in one
transaction (group commit: one fsync for many callers), and ``seq`` is advanced in that same
transaction, so no event can leave carrying a seq that a crash could hand out again.

Rows move ``queued → in_flight → delivered | dead``, or back to ``queued`` after a transport
failure. A crash leaves ``in_flight`` rows, which go back to ``queued`` at the next open:
resending is safe because the centre dedupes by ``event_id``.

Other modules keep their own tables in the same database: pass ``(name, fn(db))`` migrations
to :meth:`Outbox.open` or call :meth:`Outbox.register_migration`; run their reads and writes with
:meth:`Outbox.run`, or alongside events with ``commit(..., also=fn)``.

Eviction policy
===============

The outbox is bounded in rows and in bytes (``OutboxLimits``; bytes are the signed event bytes
plus signature, not SQLite pages). When a new event would not fit:

1. **Delivered rows go first.** The centre holds them already; they are kept only for
   ``delivered_ttl_s`` (default 24 h) as a local record, and expire then anyway.
2. **Then the oldest measurements** (queued, or dead after the centre rejected them), oldest
   ``seq`` first.
3. **Then the oldest activity events**, oldest first.
4. **Alarms are never evicted**, and neither are technical events (a silent smoke sensor or a
   mains failure is supervision the centre must see).

Alarms have reserved space: an event commit without an alarm may fill the outbox only up to
``max_rows - alarm_reserve_rows`` and ``max_bytes - alarm_reserve_bytes``. If it would eat into
that reserve and nothing more can be evicted, it is **refused** with :class:`OutboxFull` (the
caller logs it; nothing already stored is touched). A commit that carries an alarm is never
refused: it may use the reserve, evicts as above when the whole outbox is full, and is written
even beyond ``max_rows``/``max_bytes`` while the disk has room (logged as a warning).

Every eviction of an undelivered row is counted per class (kept in the database, shown by
``trygg gateway status``), logged as counts (never contents), and reported to the centre as a
``technical.outbox_evicted`` event, at most once per report interval.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import OutboxLimits
from trygg.wire.clock import Clock, format_ts, parse_ts, system_clock
from trygg.wire.envelope import (
    DEFAULT_PRIORITY,
    DeviceRef,
    Event,
    EventClass,
    SignedEvent,
    sign_event,
)
from trygg.wire.ids import uuid7
from trygg.wire.jws import key_id
from trygg.wire.messages import MAX_BATCH_BYTES
from trygg.wire.receipt import Receipt

log = logging.getLogger("trygg.gateway.outbox")

T = TypeVar("T")

OutboxState = Literal["queued", "in_flight", "delivered", "dead"]
STATES: tuple[OutboxState, ...] = ("queued", "in_flight", "delivered", "dead")
CLASSES: tuple[str, ...] = tuple(DEFAULT_PRIORITY)
EVICTABLE_CLASSES: tuple[str, ...] = ("measurement", "activity")
"""Evicted under pressure, in this order, oldest first."""

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]
"""A named schema step; applied once per database, in order, inside a transaction."""

BATCH_ENVELOPE_OVERHEAD = 32
"""Bytes a batch body adds per event around the stored body and sig."""

_META_SEQ = "seq"
_META_BOOT = "boot_id"
_META_SCHEMA = "schema_version"
_META_LAST_DELIVERY = "last_delivery_at"
_META_EVICTED = "evicted:"
_META_BACKLOG = "backlog_alarm_raised"


class OutboxError(RuntimeError):
    """The outbox was used in a way it does not allow."""


class OutboxFull(OutboxError):
    """A non-alarm commit would eat into the alarm reserve and nothing more can be evicted."""


class OutboxClosed(OutboxError):
    pass


class BatchInFlight(OutboxError):
    """A batch was claimed while the previous one is not settled (never prefetch)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EventDraft:
    """What a rule decided happened; the outbox adds identity, sequence, time and signature."""

    event_class: EventClass
    type: str
    occurred_at: datetime
    priority: int | None = None
    """None takes ``DEFAULT_PRIORITY[event_class]``; lower is more urgent."""
    device: DeviceRef | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    vkp_alert_code: str | None = None
    resident_ref: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A claimed row: the stored bytes are sent as they are, never re-signed."""

    id: int
    event_id: str
    seq: int
    priority: int
    event_class: str
    type: str
    body: bytes
    sig: str
    size: int
    attempts: int
    created_at: str


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """Why a batch did not get receipts, and how long its rows are held before they are due.

    A link-wide failure holds nothing (the uplink itself waits); a hold is for rows that fail
    on their own, such as an event the centre keeps refusing.
    """

    reason: str
    retry_in_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SettleSummary:
    delivered: int
    dead: int
    requeued: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What an installer or the centre needs to judge the outbox's health."""

    by_state: dict[str, int]
    by_class: dict[str, dict[str, int]]
    depth: int
    """Rows not yet delivered and not dead: queued plus in flight."""
    alarms_queued: int
    oldest_queued_age_s: int | None
    rows_used: int
    bytes_used: int
    dead: int
    dead_alarms: int
    evicted_total: int
    evicted_by_class: dict[str, int]
    last_delivery_at: str | None
    seq: int
    boot_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "by_state": self.by_state,
            "by_class": self.by_class,
            "depth": self.depth,
            "alarms_queued": self.alarms_queued,
            "oldest_queued_age_s": self.oldest_queued_age_s,
            "rows_used": self.rows_used,
            "bytes_used": self.bytes_used,
            "dead": self.dead,
            "dead_alarms": self.dead_alarms,
            "evicted_total": self.evicted_total,
            "evicted_by_class": self.evicted_by_class,
            "last_delivery_at": self.last_delivery_at,
            "seq": self.seq,
            "boot_id": self.boot_id,
        }


# --- schema -----------------------------------------------------------------------------


def _create_outbox_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            seq INTEGER NOT NULL,
            priority INTEGER NOT NULL,
            class TEXT NOT NULL,
            type TEXT NOT NULL,
            body BLOB NOT NULL,
            sig TEXT NOT NULL,
            size INTEGER NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('queued', 'in_flight', 'delivered', 'dead')),
            created_at TEXT NOT NULL,
            state_changed_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT
        )
        """
    )
    # The uplink's read: ORDER BY priority, seq over queued rows only.
    db.execute("CREATE INDEX outbox_queue ON outbox (priority, seq) WHERE state = 'queued'")
    # Oldest queued, crash recovery, delivered expiry.
    db.execute("CREATE INDEX outbox_state_seq ON outbox (state, seq)")
    # Eviction candidates: oldest measurements, then oldest activity.
    db.execute(
        "CREATE INDEX outbox_evict ON outbox (class, seq) "
        "WHERE state IN ('queued', 'dead') AND class IN ('measurement', 'activity')"
    )


CORE_MIGRATIONS: tuple[Migration, ...] = (("outbox.v1", _create_outbox_v1),)


def _bootstrap(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations ("
        " name TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at TEXT NOT NULL)"
    )


def _get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def apply_migrations(db: sqlite_utils.Database, migrations: Sequence[Migration], now: str) -> int:
    """Apply the named steps not yet applied, each in its own transaction; return how many."""
    names = [name for name, _ in migrations]
    if len(set(names)) != len(names):
        raise ValueError("migration names must be unique")
    _bootstrap(db)
    applied = {str(row[0]) for row in db.conn.execute("SELECT name FROM migrations")}
    count = 0
    for name, fn in migrations:
        if name in applied:
            continue
        with db.atomic():
            fn(db)
            version = int(_get_meta(db.conn, _META_SCHEMA) or "0") + 1
            db.conn.execute(
                "INSERT INTO migrations (name, version, applied_at) VALUES (?, ?, ?)",
                (name, version, now),
            )
            _set_meta(db.conn, _META_SCHEMA, str(version))
        log.info("applied migration %s (schema version %d)", name, version)
        count += 1
    return count


# --- statistics, shared by the daemon and the read-only status command --------------------


def _age_s(created_at: str | None, now: datetime) -> int | None:
    if created_at is None:
        return None
    return max(0, int((now - parse_ts(created_at)).total_seconds()))


def _oldest_undelivered(conn: sqlite3.Connection) -> str | None:
    oldest: str | None = None
    for state in ("queued", "in_flight"):
        row = conn.execute(
            "SELECT created_at FROM outbox WHERE state = ? ORDER BY seq LIMIT 1", (state,)
        ).fetchone()
        if row is not None and (oldest is None or row[0] < oldest):
            oldest = str(row[0])
    return oldest


def _evicted_from_meta(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT key, value FROM meta WHERE key LIKE ?", (_META_EVICTED + "%",)
    ).fetchall()
    return {str(key)[len(_META_EVICTED) :]: int(value) for key, value in rows}


def _build_stats(
    counts: Mapping[tuple[str, str], tuple[int, int]],
    *,
    oldest: str | None,
    evicted: Mapping[str, int],
    last_delivery_at: str | None,
    seq: int,
    boot_id: str | None,
    now: datetime,
) -> OutboxStats:
    by_state: dict[str, int] = {state: 0 for state in STATES}
    by_class: dict[str, dict[str, int]] = {}
    rows_used = bytes_used = 0
    for (klass, state), (rows, size) in counts.items():
        if rows == 0:
            continue
        by_state[state] = by_state.get(state, 0) + rows
        by_class.setdefault(klass, {s: 0 for s in STATES})[state] += rows
        rows_used += rows
        bytes_used += size

    def count(klass: str, *states: str) -> int:
        return sum(counts.get((klass, s), (0, 0))[0] for s in states)

    return OutboxStats(
        by_state=by_state,
        by_class=by_class,
        depth=by_state["queued"] + by_state["in_flight"],
        alarms_queued=count("alarm", "queued", "in_flight"),
        oldest_queued_age_s=_age_s(oldest, now),
        rows_used=rows_used,
        bytes_used=bytes_used,
        dead=by_state["dead"],
        dead_alarms=count("alarm", "dead"),
        evicted_total=sum(evicted.values()),
        evicted_by_class=dict(evicted),
        last_delivery_at=last_delivery_at,
        seq=seq,
        boot_id=boot_id,
    )


def _count_rows(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[int, int]]:
    rows = conn.execute(
        "SELECT class, state, count(*), coalesce(sum(size), 0) FROM outbox GROUP BY class, state"
    ).fetchall()
    return {(str(k), str(s)): (int(n), int(b)) for k, s, n, b in rows}


def query_stats(conn: sqlite3.Connection, now: datetime) -> OutboxStats:
    """Count everything from the database itself (for a reader in another process).

    All reads share one transaction: each SELECT on its own would see the daemon's latest
    commit, and a status taken under load would pair row counts with a later ``seq``.
    """
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        return _build_stats(
            _count_rows(conn),
            oldest=_oldest_undelivered(conn),
            evicted=_evicted_from_meta(conn),
            last_delivery_at=_get_meta(conn, _META_LAST_DELIVERY),
            seq=int(_get_meta(conn, _META_SEQ) or "0"),
            boot_id=_get_meta(conn, _META_BOOT),
            now=now,
        )
    finally:
        if own:
            conn.execute("COMMIT")


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open the database for reading while the daemon writes to it (WAL allows it)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    conn.execute("PRAGMA query_only = ON")
    return conn


# --- the writer ---------------------------------------------------------------------------


@dataclass(slots=True)
class _CommitRequest:
    drafts: tuple[EventDraft, ...]
    also: Callable[[sqlite_utils.Database], None] | None
    future: asyncio.Future[list[SignedEvent]]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _Books:
    """The writer's in-memory ledger; copied before a (sub)transaction, restored on rollback."""

    seq: int = 0
    counts: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    evicted_total: dict[str, int] = field(default_factory=dict)
    evicted_pending: Counter[str] = field(default_factory=Counter)
    last_report_at: datetime | None = None

    def copy(self) -> _Books:
        return _Books(
            self.seq,
            dict(self.counts),
            dict(self.evicted_total),
            Counter(self.evicted_pending),
            self.last_report_at,
        )

    def add(self, klass: str, state: str, rows: int, size: int) -> None:
        old_rows, old_size = self.counts.get((klass, state), (0, 0))
        self.counts[(klass, state)] = (old_rows + rows, old_size + size)

    def rows_used(self) -> int:
        return sum(rows for rows, _ in self.counts.values())

    def bytes_used(self) -> int:
        return sum(size for _, size in self.counts.values())


@dataclass(slots=True)
class _InFlight:
    id: int
    event_class: str
    size: int


def _resolve(future: asyncio.Future[list[SignedEvent]], outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(cast(list[SignedEvent], outcome))


class Outbox:
    """The single owner of the gateway database; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        key: Ed25519PrivateKey,
        gateway_id: str,
        limits: OutboxLimits,
        clock: Clock,
        kid: str | None,
        eviction_report_interval_s: float,
    ) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.limits = limits
        self.boot_id = secrets.token_hex(4)
        self._key = key
        self._kid = kid or key_id(key.public_key())
        self._clock = clock
        self._report_interval = timedelta(seconds=eviction_report_interval_s)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-writer")
        self._lock = threading.Lock()
        self._pending: list[_CommitRequest] = []
        self._flush_scheduled = False
        self._closed = False
        # Touched only in the writer thread:
        self._db: sqlite_utils.Database | None = None
        self._books = _Books()
        self._in_flight: dict[str, _InFlight] | None = None
        self._transactions = 0

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        key: Ed25519PrivateKey,
        gateway_id: str,
        limits: OutboxLimits | None = None,
        clock: Clock = system_clock,
        migrations: Sequence[Migration] = (),
        kid: str | None = None,
        eviction_report_interval_s: float = 300.0,
    ) -> Outbox:
        """Open (or create) the database, migrate it, and requeue rows a crash left in flight."""
        outbox = cls(
            path,
            key=key,
            gateway_id=gateway_id,
            limits=limits or OutboxLimits(),
            clock=clock,
            kid=kid,
            eviction_report_interval_s=eviction_report_interval_s,
        )
        outbox._check_identity()
        try:
            await outbox._submit(outbox._open_db, list(CORE_MIGRATIONS) + list(migrations))
        except BaseException:
            outbox._executor.shutdown(wait=False)
            raise
        return outbox

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._submit(self._close_db)
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Outbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_identity(self) -> None:
        """Fail at open, not at the first alarm, if the ids cannot go into an event."""
        Event.model_validate(
            {
                "event_id": str(uuid7()),
                "gateway_id": self.gateway_id,
                "boot_id": self.boot_id,
                "seq": 1,
                "occurred_at": "2025-01-01T00:00:00.000Z",
                "recorded_at": "2025-01-01T00:00:00.000Z",
                "class": "technical",
                "type": "technical.check",
                "priority": 3,
            }
        )

    def _open_db(self, migrations: Sequence[Migration]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        db = sqlite_utils.Database(conn, execute_plugins=False)
        db.enable_wal()
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        self._db = db
        now = format_ts(self._clock())
        apply_migrations(db, migrations, now)
        with db.atomic():
            stored_seq = int(_get_meta(conn, _META_SEQ) or "0")
            max_row = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            self._books.seq = max(stored_seq, int(max_row))
            _set_meta(conn, _META_SEQ, str(self._books.seq))
            _set_meta(conn, _META_BOOT, self.boot_id)
            requeued = conn.execute(
                "UPDATE outbox SET state = 'queued', state_changed_at = ?, next_attempt_at = ? "
                "WHERE state = 'in_flight'",
                (now, now),
            ).rowcount
        if requeued:
            log.warning("requeued %d rows left in flight by an earlier run", requeued)
        self._books.counts = _count_rows(conn)
        self._books.evicted_total = _evicted_from_meta(conn)
        log.info(
            "outbox open: boot %s, seq %d, %d rows",
            self.boot_id,
            self._books.seq,
            self._books.rows_used(),
        )

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- plumbing ---------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise OutboxClosed("the outbox is closed")

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection; only valid inside the writer thread (in ``run``/``also``)."""
        if self._db is None:
            raise OutboxClosed("the outbox is not open")
        return self._db

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def transaction_count(self) -> int:
        """Group transactions written by ``commit`` so far (diagnostics and tests)."""
        return self._transactions

    @contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; ``durable=False`` skips the fsync.

        Claims and settlements need no fsync of their own: lost on power failure they leave a
        row queued, which is resent and deduped by the centre; the next durable commit syncs
        the WAL up to it anyway.
        """
        conn = self.db.conn
        if not durable:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if not durable:
                conn.execute("PRAGMA synchronous = FULL")

    # -- migrations and arbitrary work ------------------------------------------------------

    async def register_migration(
        self, name: str, fn: Callable[[sqlite_utils.Database], None]
    ) -> bool:
        """Apply one named migration if this database has not had it; True if it ran now."""
        self._require_open()
        return bool(
            await self._submit(
                lambda: apply_migrations(self.db, [(name, fn)], format_ts(self._clock()))
            )
        )

    async def run(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn(db)`` in the writer thread inside one durable transaction.

        For other modules' tables. Do not change the ``outbox`` table here: its counters are
        kept by the methods of this class.
        """
        self._require_open()

        def work() -> T:
            with self._transaction(durable=True):
                return fn(self.db)

        return await self._submit(work)

    # -- commit -----------------------------------------------------------------------------

    async def commit(
        self,
        drafts: Sequence[EventDraft],
        *,
        also: Callable[[sqlite_utils.Database], None] | None = None,
    ) -> list[SignedEvent]:
        """Sign and store ``drafts`` (and run ``also(db)``) in one fsync'ed transaction.

        Returns once the events are durable. Concurrent callers share a transaction, but each
        succeeds or fails on its own: a bad draft or a failing ``also`` rolls back only that
        caller's events and state. Raises OutboxFull for a refused non-alarm commit, and
        pydantic.ValidationError / ValueError for a draft that cannot become a valid event.
        """
        self._require_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[SignedEvent]] = loop.create_future()
        request = _CommitRequest(tuple(drafts), also, future, loop)
        with self._lock:
            self._pending.append(request)
            schedule = not self._flush_scheduled
            self._flush_scheduled = True
        if schedule:
            self._executor.submit(self._flush)
        return await future

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._flush_scheduled = False
        if not batch:
            return
        try:
            outcomes = self._write_group(batch)
        except BaseException as exc:
            log.exception("group commit of %d requests failed", len(batch))
            outcomes = [exc] * len(batch)
        for request, outcome in zip(batch, outcomes, strict=True):
            request.loop.call_soon_threadsafe(_resolve, request.future, outcome)

    def _write_group(self, batch: list[_CommitRequest]) -> list[object]:
        conn = self.db.conn
        now = self._clock()
        before = self._books.copy()
        outcomes: list[object] = []
        try:
            with self._transaction(durable=True):
                for request in batch:
                    outcomes.append(self._write_request(conn, request, now))
                self._report_evictions(conn, now)
                _set_meta(conn, _META_SEQ, str(self._books.seq))
        except BaseException:
            self._books = before
            raise
        self._transactions += 1
        return outcomes

    def _write_request(
        self, conn: sqlite3.Connection, request: _CommitRequest, now: datetime
    ) -> object:
        """One caller's part of the group, inside a savepoint of its own."""
        snap = self._books.copy()
        conn.execute("SAVEPOINT request")
        try:
            signed = self._insert(conn, request.drafts, now)
            if request.also is not None:
                request.also(self.db)
        except Exception as exc:
            if not conn.in_transaction:
                # The failure destroyed the whole transaction: every caller in it must fail.
                raise
            conn.execute("ROLLBACK TO request")
            conn.execute("RELEASE request")
            self._books = snap
            return exc
        conn.execute("RELEASE request")
        return signed

    def _insert(
        self, conn: sqlite3.Connection, drafts: Sequence[EventDraft], now: datetime
    ) -> list[SignedEvent]:
        if not drafts:
            return []
        recorded_at = format_ts(now)
        unix_ms = int(now.timestamp() * 1000)
        signed: list[SignedEvent] = []
        times: dict[datetime, str] = {}  # batched readings often share a timestamp
        for draft in drafts:
            occurred_at = times.get(draft.occurred_at)
            if occurred_at is None:
                occurred_at = times[draft.occurred_at] = format_ts(draft.occurred_at)
            self._books.seq += 1
            event = Event.model_validate(
                {
                    "event_id": str(uuid7(unix_ms)),
                    "gateway_id": self.gateway_id,
                    "boot_id": self.boot_id,
                    "seq": self._books.seq,
                    "occurred_at": occurred_at,
                    "recorded_at": recorded_at,
                    "class": draft.event_class,
                    "type": draft.type,
                    "priority": (
                        DEFAULT_PRIORITY[draft.event_class]
                        if draft.priority is None
                        else draft.priority
                    ),
                    "resident_ref": draft.resident_ref,
                    "device": draft.device,
                    "data": dict(draft.data),
                    "vkp_alert_code": draft.vkp_alert_code,
                }
            )
            signed.append(sign_event(event, self._key, self._kid))
        has_alarm = any(s.event.event_class == "alarm" for s in signed)
        new_rows = len(signed)
        new_bytes = sum(len(s.body) + len(s.sig) for s in signed)
        self._make_room(conn, new_rows, new_bytes, alarm=has_alarm, now=now)
        conn.executemany(
            "INSERT INTO outbox (event_id, seq, priority, class, type, body, sig, size, state,"
            " created_at, state_changed_at, attempts, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, 0, ?)",
            [
                (
                    s.event.event_id,
                    s.event.seq,
                    s.event.priority,
                    s.event.event_class,
                    s.event.type,
                    s.body,
                    s.sig,
                    len(s.body) + len(s.sig),
                    recorded_at,
                    recorded_at,
                    recorded_at,
                )
                for s in signed
            ],
        )
        for s in signed:
            self._books.add(s.event.event_class, "queued", 1, len(s.body) + len(s.sig))
        return signed

    # -- bounds and eviction ----------------------------------------------------------------

    def _make_room(
        self, conn: sqlite3.Connection, rows: int, size: int, *, alarm: bool, now: datetime
    ) -> None:
        lim = self.limits
        max_rows = lim.max_rows if alarm else lim.max_rows - lim.alarm_reserve_rows
        max_bytes = lim.max_bytes if alarm else lim.max_bytes - lim.alarm_reserve_bytes
        excess_rows = self._books.rows_used() + rows - max_rows
        excess_bytes = self._books.bytes_used() + size - max_bytes
        if excess_rows <= 0 and excess_bytes <= 0:
            return
        excess_rows, excess_bytes = self._evict(conn, excess_rows, excess_bytes)
        if excess_rows <= 0 and excess_bytes <= 0:
            return
        if alarm:
            log.warning(
                "outbox over its limit (%d rows, %d bytes): alarm written anyway",
                self._books.rows_used() + rows,
                self._books.bytes_used() + size,
            )
            return
        raise OutboxFull(
            f"outbox full: {rows} non-alarm event(s) refused to keep the alarm reserve "
            f"({self._books.rows_used()} rows, {self._books.bytes_used()} bytes in use)"
        )

    def _eviction_tiers(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        yield (
            "SELECT id, class, state, size FROM outbox WHERE state = 'delivered' "
            "ORDER BY seq LIMIT ?",
            (),
        )
        for klass in EVICTABLE_CLASSES:
            # The WHERE repeats the partial index's terms so SQLite can use it.
            yield (
                "SELECT id, class, state, size FROM outbox "
                "WHERE state IN ('queued', 'dead') AND class IN ('measurement', 'activity') "
                "AND class = ? ORDER BY seq LIMIT ?",
                (klass,),
            )

    def _evict(
        self, conn: sqlite3.Connection, excess_rows: int, excess_bytes: int
    ) -> tuple[int, int]:
        """Delete rows in policy order until the excess is gone; return what is left of it."""
        books = self._books
        for sql, params in self._eviction_tiers():
            while excess_rows > 0 or excess_bytes > 0:
                chunk = max(excess_rows, 64)
                candidates = conn.execute(sql, (*params, chunk)).fetchall()
                if not candidates:
                    break
                doomed: list[tuple[int]] = []
                for row_id, klass, state, size in candidates:
                    if excess_rows <= 0 and excess_bytes <= 0:
                        break
                    doomed.append((row_id,))
                    excess_rows -= 1
                    excess_bytes -= size
                    books.add(klass, state, -1, -size)
                    if state != "delivered":
                        books.evicted_pending[klass] += 1
                        books.evicted_total[klass] = books.evicted_total.get(klass, 0) + 1
                conn.executemany("DELETE FROM outbox WHERE id = ?", doomed)
            if excess_rows <= 0 and excess_bytes <= 0:
                break
        for klass, total in books.evicted_total.items():
            _set_meta(conn, _META_EVICTED + klass, str(total))
        return excess_rows, excess_bytes

    def _report_evictions(self, conn: sqlite3.Connection, now: datetime) -> None:
        """Tell the centre (and the log) what was evicted, at most once per interval."""
        books = self._books
        if not books.evicted_pending:
            return
        if books.last_report_at is not None and now - books.last_report_at < self._report_interval:
            return
        counts = {klass: n for klass, n in sorted(books.evicted_pending.items())}
        draft = EventDraft(
            event_class="technical",
            type="technical.outbox_evicted",
            occurred_at=now,
            data={
                "evicted": counts,
                "evicted_total": sum(books.evicted_total.values()),
                "rows_used": books.rows_used(),
                "bytes_used": books.bytes_used(),
            },
        )
        if not self._insert_own(conn, draft, now):
            log.warning("outbox evicted %s; no room to report it yet", counts)
            return
        log.warning("outbox full: evicted %s rows to make room (oldest first)", counts)
        # Keep what the report's own row evicted for the next report.
        self._books.evicted_pending.subtract(counts)
        self._books.evicted_pending = +self._books.evicted_pending
        self._books.last_report_at = now

    def _insert_own(self, conn: sqlite3.Connection, draft: EventDraft, now: datetime) -> bool:
        """Insert one of the outbox's own technical events; False if there is no room."""
        snap = self._books.copy()
        conn.execute("SAVEPOINT own")
        try:
            self._insert(conn, [draft], now)
        except OutboxFull:
            conn.execute("ROLLBACK TO own")
            conn.execute("RELEASE own")
            self._books = snap
            return False
        conn.execute("RELEASE own")
        return True

    def _supervise_backlog(self, conn: sqlite3.Connection, now: datetime) -> None:
        """Raise ``technical.outbox_backlog`` once when depth or age cross their limits.

        Cleared once (``technical.outbox_backlog_cleared``) when both are back under; the
        flag lives in the database so a restart neither repeats nor forgets it.
        """
        stats = self._stats()
        age = stats.oldest_queued_age_s or 0
        over = stats.depth >= self.limits.depth_alarm_rows or age >= self.limits.age_alarm_s
        raised = _get_meta(conn, _META_BACKLOG) == "1"
        if over == raised:
            return
        data = {"depth": stats.depth, "alarms_queued": stats.alarms_queued, "oldest_age_s": age}
        draft = EventDraft(
            event_class="technical",
            type="technical.outbox_backlog" if over else "technical.outbox_backlog_cleared",
            priority=2 if over else 3,
            occurred_at=now,
            data=data,
        )
        if self._insert_own(conn, draft, now):
            _set_meta(conn, _META_BACKLOG, "1" if over else "0")
            log.warning("outbox backlog %s: %s", "raised" if over else "cleared", data)

    # -- the uplink's side ------------------------------------------------------------------

    async def claim_batch(self, limit: int, *, max_bytes: int = MAX_BATCH_BYTES) -> list[OutboxRow]:
        """Mark the most urgent due rows in flight and return them (``ORDER BY priority, seq``).

        Refuses while an earlier batch is unsettled: a batch is never prefetched.
        """
        self._require_open()
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return await self._submit(self._claim, limit, max_bytes)

    def _claim(self, limit: int, max_bytes: int) -> list[OutboxRow]:
        if self._in_flight is not None:
            raise BatchInFlight("the previous batch is not settled yet")
        now = format_ts(self._clock())
        conn = self.db.conn
        raw = conn.execute(
            # Pinned to the partial index: without statistics SQLite would rather sort every
            # queued row, which grows with the backlog the uplink is trying to drain.
            "SELECT id, event_id, seq, priority, class, type, body, sig, size, attempts,"
            " created_at FROM outbox INDEXED BY outbox_queue"
            " WHERE state = 'queued' AND next_attempt_at <= ?"
            " ORDER BY priority, seq LIMIT ?",
            (now, limit),
        ).fetchall()
        rows: list[OutboxRow] = []
        total = 16
        for r in raw:
            size = int(r[8]) + BATCH_ENVELOPE_OVERHEAD
            if rows and total + size > max_bytes:
                break
            total += size
            rows.append(
                OutboxRow(
                    id=int(r[0]),
                    event_id=str(r[1]),
                    seq=int(r[2]),
                    priority=int(r[3]),
                    event_class=str(r[4]),
                    type=str(r[5]),
                    body=bytes(r[6]),
                    sig=str(r[7]),
                    size=int(r[8]),
                    attempts=int(r[9]),
                    created_at=str(r[10]),
                )
            )
        if not rows:
            return []
        with self._transaction(durable=False):
            conn.executemany(
                "UPDATE outbox SET state = 'in_flight', state_changed_at = ? WHERE id = ?",
                [(now, row.id) for row in rows],
            )
        for row in rows:
            self._books.add(row.event_class, "queued", -1, -row.size)
            self._books.add(row.event_class, "in_flight", 1, row.size)
        self._in_flight = {
            row.event_id: _InFlight(row.id, row.event_class, row.size) for row in rows
        }
        return rows

    async def settle(
        self, receipts: Sequence[Receipt], *, failure: TransportFailure | None = None
    ) -> SettleSummary:
        """Close the batch in flight with the centre's verified receipts.

        ``receipts`` are receipts the caller has verified: accepted/duplicate → delivered,
        rejected → dead with the reason. Every other row of the batch goes back to queued
        with ``attempts+1``, due after ``failure.retry_in_s``, carrying ``failure.reason``.
        """
        self._require_open()
        return await self._submit(self._settle, list(receipts), failure)

    def _settle(self, receipts: list[Receipt], failure: TransportFailure | None) -> SettleSummary:
        batch = self._in_flight
        if batch is None:
            raise OutboxError("no batch is in flight")
        now_dt = self._clock()
        now = format_ts(now_dt)
        retry_at = format_ts(now_dt + timedelta(seconds=failure.retry_in_s if failure else 0.0))
        error = failure.reason if failure else "no receipt"
        delivered: list[tuple[str, int]] = []
        dead: list[tuple[str, str, int]] = []
        seen: set[str] = set()
        for receipt in receipts:
            item = batch.get(receipt.event_id)
            if item is None or receipt.event_id in seen:
                log.warning("receipt for event %s not in the batch; ignored", receipt.event_id)
                continue
            seen.add(receipt.event_id)
            if receipt.status in ("accepted", "duplicate"):
                delivered.append((now, item.id))
            else:
                reason = str(receipt.reason or "rejected")[:200]
                dead.append((now, reason, item.id))
                level = logging.ERROR if item.event_class == "alarm" else logging.WARNING
                log.log(
                    level,
                    "centre rejected %s event %s: %s",
                    item.event_class,
                    receipt.event_id,
                    reason,
                )
        retry = [
            (now, retry_at, error[:200], item.id)
            for event_id, item in batch.items()
            if event_id not in seen
        ]
        conn = self.db.conn
        with self._transaction(durable=False):
            conn.executemany(
                "UPDATE outbox SET state = 'delivered', state_changed_at = ?, last_error = NULL"
                " WHERE id = ?",
                delivered,
            )
            conn.executemany(
                "UPDATE outbox SET state = 'dead', state_changed_at = ?, last_error = ?"
                " WHERE id = ?",
                dead,
            )
            conn.executemany(
                "UPDATE outbox SET state = 'queued', state_changed_at = ?, next_attempt_at = ?,"
                " attempts = attempts + 1, last_error = ? WHERE id = ?",
                retry,
            )
            if delivered:
                _set_meta(conn, _META_LAST_DELIVERY, now)
        by_id = {item.id: item for item in batch.values()}
        for target, rows in (("delivered", delivered), ("dead", dead), ("queued", retry)):
            for row in rows:
                item = by_id[row[-1]]
                self._books.add(item.event_class, "in_flight", -1, -item.size)
                self._books.add(item.event_class, target, 1, item.size)
        self._in_flight = None
        return SettleSummary(delivered=len(delivered), dead=len(dead), requeued=len(retry))

    # -- housekeeping and statistics --------------------------------------------------------

    async def maintain(self) -> int:
        """Expire delivered rows, send a due eviction report, supervise depth and age.

        The uplink calls it with each heartbeat. Returns the number of rows expired.
        """
        self._require_open()
        return await self._submit(self._maintain)

    def _maintain(self) -> int:
        now = self._clock()
        cutoff = format_ts(now - timedelta(seconds=self.limits.delivered_ttl_s))
        conn = self.db.conn
        with self._transaction(durable=True):
            expired = conn.execute(
                "SELECT class, count(*), sum(size) FROM outbox"
                " WHERE state = 'delivered' AND state_changed_at < ? GROUP BY class",
                (cutoff,),
            ).fetchall()
            conn.execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND state_changed_at < ?", (cutoff,)
            )
            snap = self._books.copy()
            try:
                self._report_evictions(conn, now)
                self._supervise_backlog(conn, now)
                _set_meta(conn, _META_SEQ, str(self._books.seq))
            except BaseException:
                self._books = snap
                raise
        total = 0
        for klass, rows, size in expired:
            self._books.add(str(klass), "delivered", -int(rows), -int(size))
            total += int(rows)
        if total:
            log.info("expired %d delivered rows", total)
        return total

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest queued row is due (0 if now); None if none is queued."""
        self._require_open()
        return await self._submit(self._next_due_in)

    def _next_due_in(self) -> float | None:
        row = self.db.conn.execute(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'queued'"
        ).fetchone()
        if row[0] is None:
            return None
        return max(0.0, (parse_ts(str(row[0])) - self._clock()).total_seconds())

    async def stats(self) -> OutboxStats:
        """Counts from the writer's own books plus one indexed lookup: cheap under load."""
        self._require_open()
        return await self._submit(self._stats)

    def _stats(self) -> OutboxStats:
        conn = self.db.conn
        return _build_stats(
            self._books.counts,
            oldest=_oldest_undelivered(conn),
            evicted=self._books.evicted_total,
            last_delivery_at=_get_meta(conn, _META_LAST_DELIVERY),
            seq=self._books.seq,
            boot_id=self.boot_id,
            now=self._clock(),
        )

    async def recount(self) -> OutboxStats:
        """Stats counted from the table itself: for tests that check the books."""
        self._require_open()
        return await self._submit(lambda: query_stats(self.db.conn, self._clock()))
