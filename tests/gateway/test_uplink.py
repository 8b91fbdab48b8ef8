"""The uplink against a real HTTPS test centre (tests/gateway/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import UplinkConfig
from gateway.identity import Enrolment
from gateway.outbox import Outbox
from gateway.uplink import Uplink
from tests.gateway.conftest import FakeClock, LocalCentre, OpenOutbox, draft
from tests.support.ports import free_port
from tests.support.wait import eventually
from trygg.wire.clock import system_clock
from trygg.wire.jws import b64url_encode, public_key_bytes

T = TypeVar("T")

FAST = UplinkConfig(backoff_initial_s=0.01, backoff_max_s=0.04, request_timeout_s=5)


def enrolment_for(centre: LocalCentre, url: str | None = None) -> Enrolment:
    return Enrolment(
        center_url=url or centre.url,
        gateway_id="gw-test",
        municipality="0301",
        home="home-7",
        center_public_key=b64url_encode(public_key_bytes(centre.key.public_key())),
        center_kid=centre.kid,
        heartbeat_interval_s=60,
        ca_file=centre.ca_file,
        enrolled_at="2026-11-22T12:00:00.000Z",
    )


MakeUplink = Callable[..., Uplink]


@pytest.fixture
async def make_uplink(
    centre: LocalCentre, gateway_key: Ed25519PrivateKey, clock: FakeClock
) -> AsyncIterator[MakeUplink]:
    centre.enrol_directly(gateway_key)
    made: list[Uplink] = []

    def make(
        outbox: Outbox,
        *,
        config: UplinkConfig = FAST,
        url: str | None = None,
        rng: Callable[[], float] = lambda: 0.999,
        clock_: Callable[..., object] | None = None,
        idle_poll_s: float = 1.0,
    ) -> Uplink:
        uplink = Uplink(
            outbox,
            enrolment_for(centre, url),
            gateway_key,
            config,
            clock=clock_ or clock,  # type: ignore[arg-type]
            rng=rng,
            idle_poll_s=idle_poll_s,
        )
        made.append(uplink)
        return uplink

    yield make
    for uplink in made:
        await uplink.aclose()


async def states(outbox: Outbox) -> dict[str, tuple[str, int, str | None]]:
    """event type → (state, attempts, last_error) for every row."""

    def query(db: sqlite_utils.Database) -> dict[str, tuple[str, int, str | None]]:
        rows = db.execute("SELECT type, state, attempts, last_error FROM outbox ORDER BY seq")
        return {t: (s, a, e) for t, s, a, e in rows}

    return await outbox.run(query)


async def test_a_batch_is_delivered_alarm_first_and_settled_by_receipts(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("measurement"), draft("activity")])
    [alarm] = await outbox.commit([draft("alarm")])
    uplink = make_uplink(outbox)

    attempt = await uplink.deliver_once()

    assert (attempt.kind, attempt.delivered) == ("progress", 3)
    # The centre verified each signature over the bytes it re-canonicalised.
    assert [e.type for e in centre.events] == [
        "alarm.button",
        "measurement.temperature",
        "activity.door_opened",
    ]
    assert centre.events[0] == alarm.event
    stats = await outbox.stats()
    assert (stats.depth, stats.by_state["delivered"]) == (0, 3)
    assert stats.last_delivery_at is not None
    assert (await uplink.deliver_once()).kind == "idle"


async def test_batches_respect_the_batch_size_and_priority(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("measurement")] * 6)
    [alarm] = await outbox.commit([draft("alarm")])
    uplink = make_uplink(outbox, config=FAST.model_copy(update={"batch_size": 4}))
    while (await uplink.deliver_once()).kind == "progress":
        pass
    assert [len(b) for b in centre.batches] == [4, 3]
    assert centre.batches[0][0] == alarm.event.event_id


async def test_receipts_signed_by_another_key_settle_nothing(
    open_outbox: OpenOutbox,
    make_uplink: MakeUplink,
    centre: LocalCentre,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("alarm"), draft("measurement")])
    uplink = make_uplink(outbox)
    centre.mode = "wrong_key"

    with caplog.at_level(logging.ERROR, logger="trygg.gateway.security"):
        attempt = await uplink.deliver_once()

    assert attempt.kind == "failed"
    assert "unverifiable receipts" in caplog.text
    assert await states(outbox) == {
        "alarm.button": ("queued", 1, "no verifiable receipt in the answer"),
        "measurement.temperature": ("queued", 1, "no verifiable receipt in the answer"),
    }
    # With a genuine answer, the same events are settled (the centre says duplicate).
    centre.mode = "ok"
    clock.advance(attempt.retry_in_s)
    assert (await uplink.deliver_once()).delivered == 2
    assert (await outbox.stats()).by_state["delivered"] == 2


async def test_a_rejected_event_is_dead_with_its_reason_and_visible(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("alarm", "alarm.fall"), draft("alarm")])
    centre.reject_types.add("alarm.fall")
    uplink = make_uplink(outbox)

    attempt = await uplink.deliver_once()

    assert (attempt.delivered, attempt.dead) == (1, 1)
    assert (await states(outbox))["alarm.fall"] == ("dead", 0, "test_rejected")
    stats = await outbox.stats()
    assert (stats.dead, stats.dead_alarms, stats.alarms_queued) == (1, 1, 0)


async def test_a_down_centre_gets_capped_jittered_backoff_and_rows_stay(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, clock: FakeClock
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("alarm")])
    draws = iter([0.9, 0.5, 0.9, 0.9, 0.1])
    uplink = make_uplink(outbox, url=f"https://127.0.0.1:{free_port()}", rng=lambda: next(draws))
    delays = []
    for _ in range(5):
        attempt = await uplink.deliver_once()
        assert attempt.kind == "failed"
        delays.append(attempt.retry_in_s)
        assert await outbox.next_due_in() == 0.0  # the link waits out the delay, not the row
        clock.advance(attempt.retry_in_s)

    # Bounds 0.01, 0.02, 0.04 (cap), 0.04, 0.04, each scaled by the injected draw.
    assert delays == pytest.approx([0.009, 0.01, 0.036, 0.036, 0.004])
    assert uplink.status().recent_delays_s == pytest.approx(tuple(delays))
    state, attempts, error = (await states(outbox))["alarm.button"]
    assert (state, attempts) == ("queued", 5)
    assert error is not None and "cannot reach" in error


async def test_alarms_of_a_failed_batch_stay_ahead_when_an_alarm_wakes_the_link_early(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre
) -> None:
    """An outage, a door event, a new alarm waking the link before its backoff ran out, and
    the centre is back: the old alarm must not wait behind the door event (regression: the
    failed batch was stamped with the link's delay, so rows never tried overtook it)."""
    outbox = await open_outbox()
    [first] = await outbox.commit([draft("alarm")])
    centre.mode = "error_500"
    uplink = make_uplink(outbox)
    assert (await uplink.deliver_once()).kind == "failed"  # the injected clock stands still
    await outbox.commit([draft("activity")])
    [second] = await outbox.commit([draft("alarm", "alarm.fall")])
    centre.mode = "ok"

    while (await uplink.deliver_once()).kind != "idle":  # what notify() makes the loop do
        pass

    assert [e.type for e in centre.events] == ["alarm.button", "alarm.fall", "activity.door_opened"]
    assert centre.events[0] == first.event and centre.events[1] == second.event


@pytest.mark.parametrize("mode", ["unknown_gateway", "revoked"])
async def test_an_unknown_or_revoked_gateway_backs_off_at_the_cap(
    open_outbox: OpenOutbox,
    make_uplink: MakeUplink,
    centre: LocalCentre,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("alarm")])
    centre.mode = mode
    uplink = make_uplink(outbox, rng=lambda: 0.0)
    with caplog.at_level(logging.ERROR, logger="trygg.gateway.uplink"):
        attempt = await uplink.deliver_once()
    assert (attempt.kind, attempt.retry_in_s) == ("unauthorized", FAST.backoff_max_s / 2)
    assert "refuses this gateway" in caplog.text and mode in caplog.text
    assert (await outbox.stats()).alarms_queued == 1


async def test_an_event_the_centre_refuses_is_isolated_and_kept(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre, clock: FakeClock
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("measurement", "measurement.poison")])
    await outbox.commit([draft("measurement")] * 3)
    centre.malformed_types.add("measurement.poison")
    uplink = make_uplink(outbox)

    kinds = []
    while (attempt := await uplink.deliver_once()).kind != "idle":
        kinds.append(attempt.kind)
    # 4 → 2 → 1 (held back), then the batch size grows again: 1, 2.
    assert kinds == ["split", "split", "split", "progress", "progress"]
    assert len(centre.events) == 3
    state, attempts, _ = (await states(outbox))["measurement.poison"]
    assert (state, attempts) == ("queued", 3)
    assert await outbox.next_due_in() == pytest.approx(FAST.backoff_max_s)
    # Retried, never dropped: once the centre takes it, it is delivered.
    centre.malformed_types.clear()
    clock.advance(FAST.backoff_max_s)
    assert (await uplink.deliver_once()).delivered == 1


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_notify_wakes_the_loop_at_once_for_an_alarm(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre
) -> None:
    outbox = await open_outbox(clock_=system_clock)
    # A poll interval far beyond the wait below: only notify() can explain a quick delivery.
    uplink = make_uplink(outbox, clock_=system_clock, idle_poll_s=600)
    async with running(uplink):
        await eventually(lambda: _value(len(centre.heartbeats)), what="first heartbeat")
        [alarm] = await outbox.commit([draft("alarm")])
        uplink.notify()
        await eventually(
            lambda: _value([e.event_id for e in centre.events]),
            lambda ids: ids == [alarm.event.event_id],
            timeout=3,
            what="alarm delivered",
        )


async def test_the_loop_rides_out_an_outage_and_delivers_afterwards(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre
) -> None:
    outbox = await open_outbox(clock_=system_clock)
    centre.mode = "error_500"
    uplink = make_uplink(outbox, clock_=system_clock, rng=lambda: 0.999, idle_poll_s=0.05)
    await outbox.commit([draft("alarm"), draft("measurement")])
    async with running(uplink):
        await eventually(
            lambda: _value(uplink.status().consecutive_failures),
            lambda n: n >= 4,
            what="repeated failures",
        )
        delays = uplink.status().recent_delays_s
        assert max(delays) <= FAST.backoff_max_s
        assert delays[:3] == pytest.approx((0.00999, 0.01998, 0.03996))
        centre.mode = "ok"
        await eventually(
            lambda: outbox.stats(),
            lambda s: s.by_state["delivered"] == 2,
            what="delivery after the outage",
        )
    assert uplink.status().consecutive_failures == 0
    assert (await outbox.stats()).by_state["in_flight"] == 0


async def test_heartbeat_is_signed_carries_the_queue_and_adopts_the_interval(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre, clock: FakeClock
) -> None:
    outbox = await open_outbox()
    await outbox.commit([draft("alarm"), draft("measurement")])
    clock.advance(90)
    centre.heartbeat_interval_s = 7
    uplink = make_uplink(outbox)

    answer = await uplink.send_heartbeat()

    assert answer is not None and uplink.heartbeat_interval_s == 7
    [beat] = centre.heartbeats  # the centre verified its signature
    assert (beat.gateway_id, beat.boot_id, beat.sent_at) == (
        "gw-test",
        outbox.boot_id,
        "2026-11-22T12:01:30.000Z",
    )
    assert (beat.outbox_depth, beat.alarms_queued, beat.oldest_queued_age_s) == (2, 1, 90)


async def test_heartbeats_follow_the_injected_clock(
    open_outbox: OpenOutbox, make_uplink: MakeUplink, centre: LocalCentre, clock: FakeClock
) -> None:
    outbox = await open_outbox()
    centre.heartbeat_interval_s = 30
    uplink = make_uplink(outbox)
    async with running(uplink):
        await eventually(lambda: _value(len(centre.heartbeats)), lambda n: n == 1)
        clock.advance(29)
        clock.advance(1)
        await eventually(lambda: _value(len(centre.heartbeats)), lambda n: n == 2)
    assert [b.sent_at for b in centre.heartbeats] == [
        "2026-11-22T12:00:00.000Z",
        "2026-11-22T12:00:30.000Z",
    ]


async def _value(value: T) -> T:
    """Wrap a plain value as the awaitable ``eventually`` polls."""
    return value
