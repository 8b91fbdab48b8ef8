"""The centre is down while 10,000 events queue in the gateway: all arrive, alarms first, once.

Issue #2's outage proof, on real parts: the centre process is stopped (SIGTERM) and later
started again on the same port with the same database, while the gateway daemon keeps
running and the home keeps publishing to mosquitto. Every event goes the real way: a Z2M
message at QoS 1, the gateway's pipeline and rules, its durable outbox, the uplink.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime

import pytest

from drivers.simulators.zigbee_home import ZigbeeHome
from gateway.outbox import OutboxStats
from tests.e2e.streams import (
    CentreView,
    NumberedPresses,
    StoredEvent,
    gateway_event_ids,
    gateway_outbox,
    repeated,
)
from tests.support.wait import eventually
from trygg.localsite import LocalSite

EVENTS = 10_000
"""Events queued while the centre is down."""
ALARMS = 200
"""Of those, button presses (alarms); the rest are door transitions (activity)."""
QUEUE_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 150.0


def _seed() -> int:
    configured = os.environ.get("TRYGG_OUTAGE_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(2**32)


async def _publish_mix(home: ZigbeeHome, presses: NumberedPresses, rng: random.Random) -> None:
    """EVENTS messages that each raise one event: ALARMS presses among door transitions.

    The door was last reported closed, so alternating open/close makes every door message an
    edge the rules raise. The presses fall at random places in the stream.
    """
    press_at = set(rng.sample(range(EVENTS), ALARMS))
    door_open = False
    for index in range(EVENTS):
        if index in press_at:
            await presses.press()
        else:
            door_open = not door_open
            await (home.open_door() if door_open else home.close_door())


@pytest.mark.slow
async def test_backlog_after_a_centre_outage_arrives_alarms_first_and_none_twice(
    site: LocalSite, home: ZigbeeHome
) -> None:
    """After the outage the centre holds exactly what the gateway committed, alarms first.

    "Alarms first" is checked on the centre's own order of storage, which is the order its
    ingest transactions committed: every alarm queued during the outage has a lower events-row
    id than every non-alarm event queued during the outage, and was received no later than the
    earliest of them. A batch that mixes the last alarms with the first door events satisfies
    this too, because within a batch the rows are stored in the order sent (priority, then seq).
    """
    assert site.center is not None
    seed = _seed()
    rng = random.Random(seed)
    about = f"seed {seed} (replay with TRYGG_OUTAGE_SEED={seed})"
    view = CentreView(site.database_url)
    presses = NumberedPresses(home)

    async def outbox() -> OutboxStats:
        return gateway_outbox(site.gateway_dir)

    try:
        # Before the outage: the door's current state (recorded, raises nothing) and one press
        # that goes all the way, so the path is known to work and the baseline is known.
        await home.close_door()
        await presses.press()
        await eventually(
            lambda: asyncio.to_thread(view.count_alarm_events), what="the first alarm", timeout=30
        )
        idle = await eventually(
            outbox, lambda stats: stats.depth == 0, what="an empty outbox before the outage"
        )
        before = idle.seq

        await asyncio.to_thread(site.center.stop)
        started = time.monotonic()
        await _publish_mix(home, presses, rng)
        published_s = time.monotonic() - started
        queued = await eventually(
            outbox,
            lambda stats: stats.seq >= before + EVENTS,
            timeout=QUEUE_TIMEOUT_S,
            what=f"{EVENTS} events committed by the gateway",
        )
        queued_s = time.monotonic() - started
        assert queued.depth == EVENTS and queued.alarms_queued == ALARMS, (
            f"while the centre is down the outbox must hold all {EVENTS} events: {queued}"
        )

        await asyncio.to_thread(site.center.start)
        back, back_at = time.monotonic(), datetime.now(UTC)
        await eventually(
            lambda: asyncio.to_thread(view.count_events),
            lambda count: count >= before + EVENTS,
            timeout=DRAIN_TIMEOUT_S,
            what=f"all {before + EVENTS} events at the centre",
        )
        drained_s = time.monotonic() - back
        final = await eventually(
            outbox,
            lambda stats: stats.depth == 0,
            what="the gateway's outbox to empty",
        )
        stored = await asyncio.to_thread(view.events)
        alarm_event_ids = await asyncio.to_thread(view.alarm_event_ids)
    finally:
        view.close()

    during = [e for e in stored if e.seq > before]
    first_received = min(e.received_at for e in during)
    print(
        f"{about}: published {EVENTS} messages in {published_s:.1f} s, all committed after "
        f"{queued_s:.1f} s; centre back, first delivery "
        f"{(first_received - back_at).total_seconds():.1f} s later (the uplink's backoff), "
        f"all stored {drained_s:.1f} s after the centre was back; {_span(during, first_received)}"
    )

    # None twice, none lost: the centre holds exactly what the gateway committed.
    assert final.seq == before + EVENTS and final.dead == 0, f"{final}; {about}"
    event_ids = [e.event_id for e in stored]
    assert len(event_ids) == len(set(event_ids)) == final.seq, (
        f"{len(event_ids)} stored ({len(set(event_ids))} distinct) for {final.seq} committed"
    )
    at_gateway = gateway_event_ids(site.gateway_dir)
    assert set(at_gateway) == set(event_ids), f"the two sides hold different events; {about}"
    assert set(at_gateway.values()) == {"delivered"}, f"{at_gateway.values()}; {about}"

    numbers = [presses.number_of(e.occurred_at) for e in stored if e.event_class == "alarm"]
    assert repeated(numbers) == {} and sorted(numbers) == presses.accepted, (
        f"alarms at the centre do not match the presses one to one; {about}"
    )
    assert len(alarm_event_ids) == len(set(alarm_event_ids)) == len(presses.accepted), about
    doors = [e.type for e in sorted(during, key=lambda e: e.seq) if e.event_class == "activity"]
    assert len(doors) == EVENTS - ALARMS, f"{len(doors)} door events; {about}"
    assert doors[::2] == ["activity.door_opened"] * len(doors[::2]), about
    assert doors[1::2] == ["activity.door_closed"] * len(doors[1::2]), about

    # Alarms first.
    alarms = [e for e in during if e.event_class == "alarm"]
    others = [e for e in during if e.event_class != "alarm"]
    assert len(alarms) == ALARMS, about
    last_alarm = max(alarms, key=lambda e: e.id)
    first_other = min(others, key=lambda e: e.id)
    assert last_alarm.id < first_other.id, (
        f"alarm seq {last_alarm.seq} was stored after {first_other.type} seq "
        f"{first_other.seq}: {_span(during, first_received)}; {about}"
    )
    assert max(e.received_at for e in alarms) <= min(e.received_at for e in others), about


def _span(events: list[StoredEvent], first: datetime) -> str:
    alarms = [e.received_at for e in events if e.event_class == "alarm"]
    others = [e.received_at for e in events if e.event_class != "alarm"]

    def after(moments: list[datetime]) -> str:
        start, end = ((m - first).total_seconds() for m in (min(moments), max(moments)))
        return f"{start:.3f}-{end:.3f} s"

    return (
        f"after the first delivery: alarms received {after(alarms)}, other events {after(others)}"
    )
