"""Properties of the outbox under arbitrary commits, claims and outcomes (Hypothesis)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.outbox import Outbox, TransportFailure
from tests.gateway.conftest import FakeClock, draft
from trygg.wire.receipt import Receipt

CLASSES = st.sampled_from(["alarm", "technical", "measurement", "activity"])
DRAFTS = st.tuples(CLASSES, st.none() | st.integers(0, 9))
COMMITS = st.lists(st.lists(DRAFTS, min_size=1, max_size=6), min_size=1, max_size=8)
OUTCOMES = st.sampled_from(["accepted", "duplicate", "rejected", "lost"])

KEY = Ed25519PrivateKey.generate()


async def drain(
    commits: list[list[tuple[str, int | None]]], outcomes: list[str], size: int
) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        outbox = await Outbox.open(
            Path(tmp) / "g.sqlite", key=KEY, gateway_id="gw-prop", clock=clock
        )
        try:
            # Commits run concurrently, so group commit interleaves them.
            groups = await asyncio.gather(
                *(
                    outbox.commit([draft(k, priority=p) for k, p in group])  # type: ignore[arg-type]
                    for group in commits
                )
            )
            expected = {s.event.event_id for group in groups for s in group}
            seqs = sorted(s.event.seq for group in groups for s in group)
            assert seqs == list(range(1, len(seqs) + 1))

            settled: list[str] = []
            turn = 0
            while rows := await outbox.claim_batch(size):
                keys = [(r.priority, r.seq) for r in rows]
                assert keys == sorted(keys)
                receipts = []
                for row in rows:
                    outcome = outcomes[turn % len(outcomes)]
                    turn += 1
                    if outcome == "lost" and row.attempts < 2:
                        continue
                    status = "accepted" if outcome == "lost" else outcome
                    receipts.append(
                        Receipt.model_validate(
                            {
                                "gateway_id": "gw-prop",
                                "event_id": row.event_id,
                                "status": status,
                                "reason": "test",
                            }
                        )
                    )
                    settled.append(row.event_id)
                await outbox.settle(receipts, failure=TransportFailure("lost", 1.0))
                clock.advance(1)
                assert await outbox.stats() == await outbox.recount()

            assert sorted(settled) == sorted(expected)
            assert len(settled) == len(set(settled))
            stats = await outbox.stats()
            assert stats.depth == 0
            assert stats.by_state["delivered"] + stats.by_state["dead"] == len(expected)
        finally:
            await outbox.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(COMMITS, st.lists(OUTCOMES, min_size=1, max_size=5), st.integers(1, 7))
def test_every_row_leaves_exactly_once_in_priority_seq_order(
    commits: list[list[tuple[str, int | None]]], outcomes: list[str], size: int
) -> None:
    asyncio.run(drain(commits, outcomes, size))
