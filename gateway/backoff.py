"""Retry delays for the uplink: capped exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the capped exponential bound) spreads a fleet of
gateways that lost the centre at the same moment, so they do not all come back in one wave.
Pure functions: the random source is passed in, so tests get exact figures.
"""

from __future__ import annotations

from collections.abc import Callable

RandomSource = Callable[[], float]
"""Returns a float in [0, 1), like ``random.Random().random``."""

_MAX_EXPONENT = 62


def backoff_bound(attempt: int, *, initial_s: float, cap_s: float) -> float:
    """The upper bound of the delay before retry number ``attempt`` (1 = first retry)."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    exponent = min(attempt - 1, _MAX_EXPONENT)
    return float(min(cap_s, initial_s * (2.0**exponent)))


def backoff_delay(attempt: int, *, initial_s: float, cap_s: float, rng: RandomSource) -> float:
    """A delay drawn uniformly from [0, bound): the bound doubles per attempt up to the cap."""
    return backoff_bound(attempt, initial_s=initial_s, cap_s=cap_s) * _unit(rng())


def capped_delay(*, cap_s: float, rng: RandomSource) -> float:
    """A delay in [cap/2, cap): for answers that will not change soon (a revoked gateway)."""
    return cap_s * (0.5 + 0.5 * _unit(rng()))


def _unit(value: float) -> float:
    """Clamp a random draw into [0, 1] so a faulty source can never give a negative wait."""
    return min(max(value, 0.0), 1.0)
