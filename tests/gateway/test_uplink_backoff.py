"""The retry delay, tested as the pure function it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import backoff_bound, backoff_delay, capped_delay


def test_bound_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    bounds = [backoff_bound(n, initial_s=0.5, cap_s=10.0) for n in range(1, 8)]
    assert bounds == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_bound(10_000, initial_s=0.5, cap_s=10.0) == 10.0  # no overflow


def test_full_jitter_scales_the_bound_by_the_random_draw() -> None:
    assert backoff_delay(3, initial_s=1.0, cap_s=60.0, rng=lambda: 0.0) == 0.0
    assert backoff_delay(3, initial_s=1.0, cap_s=60.0, rng=lambda: 0.25) == 1.0
    assert backoff_delay(9, initial_s=1.0, cap_s=60.0, rng=lambda: 0.5) == 30.0


def test_a_faulty_random_source_never_gives_a_negative_or_oversized_wait() -> None:
    assert backoff_delay(2, initial_s=1.0, cap_s=60.0, rng=lambda: -3.0) == 0.0
    assert backoff_delay(2, initial_s=1.0, cap_s=60.0, rng=lambda: 7.0) == 2.0
    with pytest.raises(ValueError):
        backoff_bound(0, initial_s=1.0, cap_s=60.0)


@given(
    st.integers(1, 200),
    st.floats(0.001, 10.0),
    st.floats(0.001, 600.0),
    st.floats(0.0, 0.999999),
)
def test_delay_stays_within_zero_and_the_capped_bound(
    attempt: int, initial: float, cap: float, draw: float
) -> None:
    delay = backoff_delay(attempt, initial_s=initial, cap_s=cap, rng=lambda: draw)
    assert 0.0 <= delay <= min(cap, initial * 2.0 ** min(attempt - 1, 62))


@given(st.floats(0.0, 0.999999))
def test_capped_delay_waits_between_half_the_cap_and_the_cap(draw: float) -> None:
    assert 30.0 <= capped_delay(cap_s=60.0, rng=lambda: draw) <= 60.0
