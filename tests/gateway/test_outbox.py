"""The outbox on a real SQLite file: durability, order, group commit, states, migrations."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.outbox import BatchInFlight, OutboxError, TransportFailure, open_read_only
from tests.gateway.conftest import FakeClock, OpenOutbox, draft
from trygg.wire.envelope import verify_event
from trygg.wire.receipt import Receipt


def receipt(event_id: str, status: str = "accepted", reason: str | None = None) -> Receipt:
    return Receipt.model_validate(
        {"gateway_id": "gw-test", "event_id": event_id, "status": status, "reason": reason}
    )


async def test_committed_event_is_signed_queued_and_verifies(
    open_outbox: OpenOutbox, gateway_key: Ed25519PrivateKey
) -> None:
    outbox = await open_outbox()
    [signed] = await outbox.commit([draft("alarm")])

    assert signed.event.gateway_id == "gw-test"
    assert signed.event.boot_id == outbox.boot_id
    assert signed.event.priority == 1
    assert signed.event.recorded_at == "2026-11-22T12:00:00.000Z"
    # The stored bytes are what is sent; the centre verifies them after re-parsing.
    [row] = await outbox.claim_batch(10)
    assert (row.body, row.sig) == (signed.body, signed.sig)
    assert verify_event(json.loads(row.body), row.sig, gateway_key.public_key()).event == (
        signed.event
    )
    stats = await outbox.stats()
    assert (stats.alarms_queued, stats.depth, stats.by_state["in_flight"]) == (1, 1, 1)


async def test_seq_strictly_increases_across_reopen_and_boot_id_changes(
    open_outbox: OpenOutbox,
) -> None:
    first = await open_outbox()
    seqs = [s.event.seq for s in await first.commit([draft(), draft("alarm"), draft()])]
    boot = first.boot_id
    await first.close()

    second = await open_outbox()
    seqs += [s.event.seq for s in await second.commit([draft(), draft()])]
    assert seqs == [1, 2, 3, 4, 5]
    assert second.boot_id != boot
    assert (await second.stats()).boot_id == second.boot_id


async def test_seq_is_persisted_with_the_events_in_the_same_transaction(
    open_outbox: OpenOutbox,
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft()] * 3)
    # A second reader sees the committed counter as soon as commit returns.
    conn = open_read_only(outbox.path)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0] == "3"
        assert conn.execute("SELECT max(seq) FROM outbox").fetchone()[0] == 3
    finally:
        conn.close()


async def test_rows_in_flight_at_a_crash_are_queued_again_with_the_same_bytes(
    open_outbox: OpenOutbox,
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("alarm"), draft()])
    claimed = await outbox.claim_batch(10)
    await outbox.close()  # never settled: as after a crash

    reopened = await open_outbox()
    stats = await reopened.stats()
    assert (stats.by_state["in_flight"], stats.by_state["queued"]) == (0, 2)
    again = await reopened.claim_batch(10)
    assert [(r.event_id, r.body, r.sig) for r in again] == [
        (r.event_id, r.body, r.sig) for r in claimed
    ]


async def test_batches_come_in_priority_then_seq_order(open_outbox: OpenOutbox) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("measurement"), draft("activity"), draft("technical")])
    await outbox.commit([draft("alarm"), draft("measurement", priority=0)])
    rows = await outbox.claim_batch(10)
    assert [(r.priority, r.seq) for r in rows] == [(0, 5), (1, 4), (3, 3), (5, 1), (6, 2)]


async def test_a_second_batch_is_refused_until_the_first_is_settled(
    open_outbox: OpenOutbox,
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft(), draft()])
    first = await outbox.claim_batch(1)
    with pytest.raises(BatchInFlight):
        await outbox.claim_batch(1)
    await outbox.settle([receipt(first[0].event_id)])
    assert [r.seq for r in await outbox.claim_batch(1)] == [2]


async def test_settle_moves_rows_by_receipt_and_requeues_the_rest_with_backoff(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    outbox = await open_outbox()
    signed = await outbox.commit([draft("alarm"), draft(), draft(), draft("alarm", "alarm.fall")])
    ids = [s.event.event_id for s in signed]
    await outbox.claim_batch(10)
    summary = await outbox.settle(
        [receipt(ids[0]), receipt(ids[1], "duplicate"), receipt(ids[3], "rejected", "malformed")],
        failure=TransportFailure("connection reset", retry_in_s=30),
    )
    assert (summary.delivered, summary.dead, summary.requeued) == (2, 1, 1)

    stats = await outbox.stats()
    assert stats.by_state == {"queued": 1, "in_flight": 0, "delivered": 2, "dead": 1}
    assert (stats.dead_alarms, stats.last_delivery_at) == (1, "2026-11-22T12:00:00.000Z")
    assert stats == await outbox.recount()

    # The requeued row waits out the link's backoff, then comes back with attempts+1.
    assert await outbox.claim_batch(10) == []
    clock.advance(30)
    [row] = await outbox.claim_batch(10)
    assert (row.event_id, row.attempts) == (ids[2], 1)

    def dead_reason(db: sqlite_utils.Database) -> object:
        return db.execute("SELECT last_error FROM outbox WHERE event_id = ?", [ids[3]]).fetchone()[
            0
        ]

    assert await outbox.run(dead_reason) == "malformed"


async def test_receipts_for_other_events_settle_nothing(open_outbox: OpenOutbox) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("alarm")])
    await outbox.claim_batch(10)
    summary = await outbox.settle([receipt("0190a3c4-1111-7aaa-8bbb-123456789abc")])
    assert (summary.delivered, summary.requeued) == (0, 1)
    assert (await outbox.stats()).alarms_queued == 1
    with pytest.raises(OutboxError):
        await outbox.settle([])


async def test_concurrent_commits_share_one_transaction(open_outbox: OpenOutbox) -> None:
    outbox = await open_outbox()
    entered, release = threading.Event(), threading.Event()

    def hold_the_writer(db: sqlite_utils.Database) -> None:
        entered.set()
        release.wait(10)

    blocker = asyncio.ensure_future(outbox.run(hold_the_writer))
    await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
    before = outbox.transaction_count
    loop = asyncio.get_running_loop()
    callers = [asyncio.ensure_future(outbox.commit([draft("alarm")])) for _ in range(20)]
    # Callbacks run in order: every commit has queued itself before the writer is released.
    loop.call_soon(release.set)
    results = await asyncio.gather(*callers)
    await blocker

    assert outbox.transaction_count == before + 1
    assert [r[0].event.seq for r in results] == list(range(1, 21))


async def test_also_runs_inside_the_events_transaction(open_outbox: OpenOutbox) -> None:
    def create_notes(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE notes (text TEXT NOT NULL, outbox_rows INTEGER NOT NULL)")

    outbox = await open_outbox(migrations=(("test.notes", create_notes),))

    def note(db: sqlite_utils.Database) -> None:
        # The events of this very commit are visible: same transaction.
        rows = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        db.execute("INSERT INTO notes VALUES ('pressed', ?)", [rows])

    await outbox.commit([draft("alarm"), draft()], also=note)
    notes = await outbox.run(lambda db: db.execute("SELECT * FROM notes").fetchall())
    assert notes == [("pressed", 2)]


async def test_failing_also_rolls_back_its_events_but_not_its_neighbours(
    open_outbox: OpenOutbox,
) -> None:
    def create_notes(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE notes (text TEXT NOT NULL)")

    outbox = await open_outbox(migrations=(("test.notes", create_notes),))
    entered, release = threading.Event(), threading.Event()

    def hold(db: sqlite_utils.Database) -> None:
        entered.set()
        release.wait(10)

    def broken(db: sqlite_utils.Database) -> None:
        db.table("notes").insert({"text": "half-done"})  # sqlite-utils' helper: no commit
        raise RuntimeError("state write failed")

    blocker = asyncio.ensure_future(outbox.run(hold))
    await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
    good = asyncio.ensure_future(outbox.commit([draft("alarm")]))
    bad = asyncio.ensure_future(outbox.commit([draft("alarm"), draft()], also=broken))
    after = asyncio.ensure_future(outbox.commit([draft()]))
    asyncio.get_running_loop().call_soon(release.set)
    await blocker
    assert [s.event.seq for s in await good] == [1]
    with pytest.raises(RuntimeError, match="state write failed"):
        await bad
    # The failed caller's seqs are not burnt: the counter stays gap-free.
    assert [s.event.seq for s in await after] == [2]

    stats = await outbox.recount()
    assert (stats.rows_used, stats.seq) == (2, 2)
    assert await outbox.run(lambda db: db.execute("SELECT count(*) FROM notes").fetchone()) == (0,)


async def test_an_invalid_draft_is_refused_and_stores_nothing(open_outbox: OpenOutbox) -> None:
    outbox = await open_outbox()
    with pytest.raises(ValidationError):
        await outbox.commit([draft(data={"temperature": 21.5})])  # floats are never signed
    with pytest.raises(ValidationError):
        await outbox.commit([draft("alarm", "measurement.temperature")])  # type/class mismatch
    assert (await outbox.recount()).rows_used == 0
    assert [s.event.seq for s in await outbox.commit([draft()])] == [1]


async def test_delivered_rows_expire_after_their_ttl(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    from gateway.config import OutboxLimits

    outbox = await open_outbox(limits=OutboxLimits(delivered_ttl_s=3600))
    signed = await outbox.commit([draft(), draft()])
    await outbox.claim_batch(10)
    await outbox.settle([receipt(s.event.event_id) for s in signed])
    clock.advance(3599)
    assert await outbox.maintain() == 0
    clock.advance(2)
    assert await outbox.maintain() == 2
    stats = await outbox.stats()
    assert (stats.rows_used, stats.last_delivery_at) == (0, "2026-11-22T12:00:00.000Z")
    assert stats == await outbox.recount()


async def test_other_modules_migrations_run_once_and_bump_the_schema_version(
    open_outbox: OpenOutbox,
) -> None:
    calls: list[str] = []

    def v1(db: sqlite_utils.Database) -> None:
        calls.append("v1")
        db.execute("CREATE TABLE device_state (device TEXT PRIMARY KEY, state TEXT)")

    def v2(db: sqlite_utils.Database) -> None:
        calls.append("v2")
        db.execute("ALTER TABLE device_state ADD COLUMN seen_at TEXT")

    outbox = await open_outbox(migrations=(("ingest.v1", v1),))
    assert await outbox.register_migration("ingest.v2", v2) is True
    assert await outbox.register_migration("ingest.v2", v2) is False
    await outbox.close()

    reopened = await open_outbox(migrations=(("ingest.v1", v1), ("ingest.v2", v2)))
    assert calls == ["v1", "v2"]

    def schema(db: sqlite_utils.Database) -> tuple[str, list[str]]:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return version[0], list(db["device_state"].columns_dict)

    assert await reopened.run(schema) == ("3", ["device", "state", "seen_at"])


async def test_a_failing_migration_leaves_no_trace(open_outbox: OpenOutbox) -> None:
    def broken(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError, match="migration bug"):
        await open_outbox(migrations=(("broken.v1", broken),))
    outbox = await open_outbox()
    assert not await outbox.run(lambda db: db["half"].exists())


async def test_backlog_is_raised_once_and_cleared_once(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    from gateway.config import OutboxLimits

    outbox = await open_outbox(limits=OutboxLimits(depth_alarm_rows=3, age_alarm_s=600))
    await outbox.commit([draft(), draft()])
    await outbox.maintain()
    clock.advance(600)
    await outbox.maintain()  # oldest is 10 minutes old: raised
    await outbox.maintain()  # still over: not raised again

    def backlog_types(db: sqlite_utils.Database) -> list[str]:
        rows = db.execute("SELECT type FROM outbox WHERE type LIKE 'technical.outbox_backlog%'")
        return [r[0] for r in rows]

    assert await outbox.run(backlog_types) == ["technical.outbox_backlog"]
    while rows := await outbox.claim_batch(100):
        await outbox.settle([receipt(r.event_id) for r in rows])
    await outbox.maintain()
    await outbox.maintain()
    assert await outbox.run(backlog_types) == [
        "technical.outbox_backlog",
        "technical.outbox_backlog_cleared",
    ]
