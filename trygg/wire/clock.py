"""Time on the wire: UTC, millisecond RFC 3339 strings, and an injectable clock."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime; tests pass their own."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def monotonic() -> float:
    return time.monotonic()


def format_ts(moment: datetime) -> str:
    """``2025-03-14T08:30:00.123Z``: UTC, milliseconds, as the envelope requires."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset or Z into an aware UTC datetime."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise ValueError("timestamp must be RFC 3339 with a UTC offset, e.g. 2026-01-31T08:30:00Z")
    return datetime.fromisoformat(text).astimezone(UTC)
