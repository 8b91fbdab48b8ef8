"""SIGKILL the process that owns the outbox mid-stream: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import sqlite_utils

from gateway.outbox import EventDraft, Outbox
from tests.gateway.conftest import START
from trygg.wire.keys import create_private_key, load_private_key

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.outbox import EventDraft, Outbox
from trygg.wire.keys import load_private_key

async def main() -> None:
    outbox = await Outbox.open(
        Path(sys.argv[1]), key=load_private_key(Path(sys.argv[2])), gateway_id="gw-crash"
    )
    await outbox.commit([EventDraft(event_class="measurement", type="measurement.t",
                                    occurred_at=datetime.now(UTC))] * 10)
    await outbox.claim_batch(5)  # left in flight when the process dies
    print("ready", flush=True)

    async def alarm() -> None:
        [signed] = await outbox.commit([EventDraft(
            event_class="alarm", type="alarm.button", occurred_at=datetime.now(UTC))])
        print("committed", signed.event.event_id, signed.event.seq, flush=True)

    while True:
        await asyncio.gather(*(alarm() for _ in range(8)))

asyncio.run(main())
"""


def run_until_killed(db: Path, key: Path, acknowledged: int) -> dict[str, int]:
    """Start the writer, read ``acknowledged`` commit lines, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(key)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    seen: dict[str, int] = {}
    try:
        assert child.stdout.readline().strip() == "ready"
        while len(seen) < acknowledged:
            line = child.stdout.readline()
            assert line, "the writer died on its own"
            _, event_id, seq = line.split()
            seen[event_id] = int(seq)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return seen


async def test_acknowledged_alarms_survive_sigkill_and_seq_never_repeats(tmp_path: Path) -> None:
    db, key_file = tmp_path / "gateway.sqlite", tmp_path / "signing_key.pem"
    create_private_key(key_file)
    acknowledged: dict[str, int] = {}
    for round_, count in enumerate([37, 150, 290]):
        acknowledged |= await asyncio.to_thread(run_until_killed, db, key_file, count)

        outbox = await Outbox.open(db, key=load_private_key(key_file), gateway_id="gw-crash")
        try:
            stored = await outbox.run(stored_seqs)
            stats = await outbox.stats()
            assert stats.by_state["in_flight"] == 0, "rows in flight at the crash are requeued"
            # Every alarm whose commit returned is there, with the seq it was given.
            assert {e: stored.get(e) for e in acknowledged} == acknowledged, f"round {round_}"
            # No seq was handed out twice, and the next one continues after all of them.
            assert sorted(stored.values()) == list(range(1, len(stored) + 1))
            [next_event] = await outbox.commit(
                [EventDraft(event_class="alarm", type="alarm.button", occurred_at=START)]
            )
            assert next_event.event.seq == len(stored) + 1
        finally:
            await outbox.close()


def stored_seqs(db: sqlite_utils.Database) -> dict[str, int]:
    return {str(e): int(s) for e, s in db.execute("SELECT event_id, seq FROM outbox")}
