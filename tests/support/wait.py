"""Waiting on something to become true, with a deadline, for parts that push no notice.

Prefer waiting on the event itself (a line a server prints, a future, a queue). Where a
real part offers no notification (a row appearing in another process's database), poll
with a short interval and a hard deadline: the test fails with the last value seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.02


class WaitTimeout(AssertionError):
    pass


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for polling, not for one await
    what: str = "condition",
) -> T:
    """Await ``probe()`` until ``accept`` holds for its value; return that value."""
    deadline = time.monotonic() + timeout
    interval = POLL_INTERVAL_S
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{what} not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


def eventually_sync(
    probe: Callable[[], T],
    accept: Callable[[T], bool] = bool,
    *,
    timeout: float = 10.0,
    what: str = "condition",
) -> T:
    """The blocking twin of :func:`eventually`, for fixtures outside an event loop."""
    deadline = time.monotonic() + timeout
    interval = POLL_INTERVAL_S
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{what} not reached within {timeout}s; last value: {value!r}")
        time.sleep(interval)
