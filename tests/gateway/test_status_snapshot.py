"""A status read beside a busy writer is one snapshot: row counts and seq never disagree."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.outbox import open_read_only, query_stats
from tests.gateway.conftest import FakeClock, OpenOutbox, draft


async def test_counts_and_seq_come_from_one_snapshot_while_the_writer_commits(
    tmp_path: Path, open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    path = tmp_path / "gateway.sqlite"
    outbox = await open_outbox(path=path)
    await outbox.commit([draft("activity")] * 3)

    reader = open_read_only(path)
    writer = sqlite3.connect(path, isolation_level=None)
    interleaved: list[str] = []

    def commit_between_reads(sql: str) -> None:
        # Once the rows have been counted, the daemon commits more events (seq moves on).
        if not interleaved and "FROM outbox WHERE state" in sql:
            interleaved.append(sql)
            writer.execute("UPDATE meta SET value = '103' WHERE key = 'seq'")

    reader.set_trace_callback(commit_between_reads)
    try:
        stats = query_stats(reader, clock())
    finally:
        reader.close()
        writer.close()

    assert interleaved, "the writer never got between the reads"
    assert (stats.rows_used, stats.seq) == (3, 3)
