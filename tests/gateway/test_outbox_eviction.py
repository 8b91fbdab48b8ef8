"""The written eviction policy, with tiny limits: see the gateway/outbox.py docstring."""

from __future__ import annotations

import json

import pytest
import sqlite_utils

from gateway.config import OutboxLimits
from gateway.outbox import Outbox, OutboxFull
from tests.gateway.conftest import FakeClock, OpenOutbox, draft
from trygg.wire.receipt import Receipt

# Non-alarms may fill 90 rows; the last 10 are kept for alarms.
ROWS = OutboxLimits(max_rows=100, alarm_reserve_rows=10)


async def rows_by_class(outbox: Outbox) -> dict[str, list[int]]:
    def query(db: sqlite_utils.Database) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for klass, seq in db.execute("SELECT class, seq FROM outbox ORDER BY seq"):
            found.setdefault(klass, []).append(seq)
        return found

    return await outbox.run(query)


async def eviction_reports(outbox: Outbox) -> list[dict[str, object]]:
    def query(db: sqlite_utils.Database) -> list[dict[str, object]]:
        rows = db.execute("SELECT body FROM outbox WHERE type = 'technical.outbox_evicted'")
        return [json.loads(body)["data"] for (body,) in rows]

    return await outbox.run(query)


async def test_oldest_measurements_go_first_and_the_eviction_is_reported(
    open_outbox: OpenOutbox,
) -> None:
    outbox = await open_outbox(limits=ROWS)
    await outbox.commit([draft("measurement")] * 90)
    await outbox.commit([draft("measurement")] * 5)

    found = await rows_by_class(outbox)
    # Five made room for the new ones and one for the report itself: the oldest six.
    assert found["measurement"] == list(range(7, 96))
    assert found["technical"] == [96]
    [report] = await eviction_reports(outbox)
    assert report["evicted"] == {"measurement": 5}  # its own eviction goes in the next one
    stats = await outbox.stats()
    assert (stats.rows_used, stats.evicted_total, stats.evicted_by_class) == (
        90,
        6,
        {"measurement": 6},
    )
    assert stats == await outbox.recount()


async def test_measurements_go_before_activity_and_activity_oldest_first(
    open_outbox: OpenOutbox,
) -> None:
    outbox = await open_outbox(limits=ROWS, report_interval_s=3600)
    await outbox.commit([draft("activity")] * 40)  # seq 1-40
    await outbox.commit([draft("measurement")] * 50)  # seq 41-90
    await outbox.commit([draft("activity")] * 55)  # seq 91-145

    found = await rows_by_class(outbox)
    assert "measurement" not in found
    # 50 measurements + 1 report was not enough: the 6 oldest activity rows went too.
    assert found["activity"] == list(range(7, 41)) + list(range(91, 146))
    assert (await outbox.stats()).evicted_by_class == {"measurement": 50, "activity": 6}


async def test_delivered_rows_make_room_before_anything_queued(open_outbox: OpenOutbox) -> None:
    outbox = await open_outbox(limits=ROWS)
    signed = await outbox.commit([draft("measurement")] * 90)
    await outbox.claim_batch(10)
    await outbox.settle(
        [
            Receipt(gateway_id="gw-test", event_id=s.event.event_id, status="accepted")
            for s in signed[:10]
        ]
    )
    await outbox.commit([draft("measurement")] * 10)
    found = await rows_by_class(outbox)
    assert found["measurement"] == list(range(11, 101))
    stats = await outbox.stats()
    # Delivered rows were already at the centre: nothing undelivered was evicted.
    assert (stats.evicted_total, stats.by_state["delivered"]) == (0, 0)
    assert await eviction_reports(outbox) == []


async def test_alarms_are_never_evicted_use_the_reserve_and_may_exceed_the_limit(
    open_outbox: OpenOutbox,
) -> None:
    outbox = await open_outbox(limits=ROWS)
    await outbox.commit([draft("measurement")] * 90)
    await outbox.commit([draft("alarm")] * 10)  # the reserve: nothing evicted
    assert (await outbox.stats()).evicted_total == 0
    for _ in range(30):
        await outbox.commit([draft("alarm")])
    await outbox.commit([draft("alarm")] * 80)

    found = await rows_by_class(outbox)
    assert "measurement" not in found
    assert len(found["alarm"]) == 120
    stats = await outbox.stats()
    assert (stats.alarms_queued, stats.evicted_by_class) == (120, {"measurement": 90})
    assert stats.rows_used > ROWS.max_rows


async def test_non_alarm_is_refused_when_only_the_reserve_is_left(
    open_outbox: OpenOutbox,
) -> None:
    outbox = await open_outbox(limits=ROWS)
    await outbox.commit([draft("technical")] * 90)  # technical events are never evicted
    before = await outbox.recount()
    for klass in ("measurement", "activity", "technical"):
        with pytest.raises(OutboxFull, match="alarm reserve"):
            await outbox.commit([draft(klass)])
    assert await outbox.recount() == before
    # An alarm still goes in, and so does a commit that carries one.
    await outbox.commit([draft("alarm")])
    await outbox.commit([draft("alarm"), draft("technical")])
    assert (await outbox.stats()).alarms_queued == 2


async def test_byte_limits_evict_like_row_limits(open_outbox: OpenOutbox) -> None:
    limits = OutboxLimits(
        max_rows=10_000,
        alarm_reserve_rows=10,
        max_bytes=1024 * 1024,
        alarm_reserve_bytes=256 * 1024,
    )
    outbox = await open_outbox(limits=limits)
    big = {"blob": "x" * 12_000}
    for _ in range(80):
        await outbox.commit([draft("measurement", data=big)])
    stats = await outbox.stats()
    assert stats.bytes_used <= limits.max_bytes - limits.alarm_reserve_bytes
    assert stats.evicted_by_class["measurement"] > 0
    for _ in range(20):
        await outbox.commit([draft("alarm", data=big)])
    stats = await outbox.stats()
    assert stats.alarms_queued == 20
    assert stats.bytes_used <= limits.max_bytes
    assert stats == await outbox.recount()


async def test_eviction_reports_are_rate_limited_and_carry_accumulated_counts(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    outbox = await open_outbox(limits=ROWS, report_interval_s=60)
    await outbox.commit([draft("measurement")] * 90)
    await outbox.commit([draft("measurement")] * 3)  # reported; +1 for the report row
    clock.advance(30)
    await outbox.commit([draft("measurement")] * 4)  # within the interval: counted only
    assert len(await eviction_reports(outbox)) == 1
    clock.advance(31)
    await outbox.maintain()  # the interval has passed: the pending counts are reported

    reports = await eviction_reports(outbox)
    assert [r["evicted"] for r in reports] == [{"measurement": 3}, {"measurement": 5}]
    assert (await outbox.stats()).evicted_total == 9
