"""Date Time 0x2A08 and Current Time 0x2A2B (standards.md §3.2).

A device's Date Time is its local wall-clock time with no zone, so it stays naive here:
the driver knows when it received the frame and records the offset between the two
clocks. Year, month or day 0 mean "not known" per the GATT Specification Supplement;
such a time is kept (the fields round-trip) but has no :attr:`DeviceTime.as_datetime`.
Impossible times (month 13, 30 February, 2025-02-29, hour 24) are refused.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, IntFlag

from drivers.ble._frame import U16, FieldError, Frame, check_size, pack_u16
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import CURRENT_TIME, DATE_TIME

DATE_TIME_SIZE = 7
CURRENT_TIME_SIZE = 10
FIRST_YEAR, LAST_YEAR = 1582, 9999


class DateTimeParseError(BleParseError):
    """A Date Time or Current Time frame that cannot be used."""


@dataclass(frozen=True, slots=True)
class DeviceTime:
    """A time as the device's clock showed it: local, no zone, possibly unknown."""

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int

    @property
    def known(self) -> bool:
        """False when the device said it does not know the year, month or day."""
        return bool(self.year and self.month and self.day)

    @property
    def as_datetime(self) -> datetime | None:
        """The naive wall-clock time, or None when the date is not known."""
        if not self.known:
            return None
        return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)

    @classmethod
    def of(cls, wall: datetime) -> DeviceTime:
        """The wall-clock fields of ``wall`` (its zone, if any, is not converted)."""
        return cls(wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second)

    def __str__(self) -> str:
        moment = self.as_datetime
        if moment is not None:
            return moment.isoformat()
        return (
            f"unknown {self.year:04d}-{self.month:02d}-{self.day:02d}"
            f"T{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}"
        )


def check_device_time(t: DeviceTime) -> None:
    """Raise FieldError unless every field is in range and the date can exist."""
    if t.year and not FIRST_YEAR <= t.year <= LAST_YEAR:
        raise FieldError(f"year {t.year} outside {FIRST_YEAR}-{LAST_YEAR} (0 = unknown)")
    if not 0 <= t.month <= 12:
        raise FieldError(f"month {t.month} is not a month (1-12, 0 = unknown)")
    if not 0 <= t.day <= 31:
        raise FieldError(f"day {t.day} is not a day of a month (1-31, 0 = unknown)")
    if t.month and t.day:
        # An unknown year may be a leap year: 29 February is possible then.
        last = calendar.monthrange(t.year or 2000, t.month)[1]
        if t.day > last:
            when = f"{t.year:04d}-" if t.year else ""
            raise FieldError(f"date {when}{t.month:02d}-{t.day:02d} does not exist")
    if not 0 <= t.hours <= 23:
        raise FieldError(f"hours {t.hours} outside 0-23")
    if not 0 <= t.minutes <= 59:
        raise FieldError(f"minutes {t.minutes} outside 0-59")
    if not 0 <= t.seconds <= 59:
        raise FieldError(f"seconds {t.seconds} outside 0-59")


def date_time_at(data: Frame, offset: int) -> DeviceTime:
    """The 7-byte Date Time at ``offset`` (in bounds), checked; FieldError if impossible."""
    t = DeviceTime(
        U16.unpack_from(data, offset)[0],
        data[offset + 2],
        data[offset + 3],
        data[offset + 4],
        data[offset + 5],
        data[offset + 6],
    )
    check_device_time(t)
    return t


def pack_date_time(t: DeviceTime) -> bytes:
    """The 7 bytes of ``t``; ValueError for a time a decoder would refuse."""
    try:
        check_device_time(t)
    except FieldError as exc:
        raise ValueError(exc.reason) from None
    return pack_u16(t.year) + bytes((t.month, t.day, t.hours, t.minutes, t.seconds))


def decode_date_time(data: Frame) -> DeviceTime:
    """Date Time 0x2A08."""
    try:
        check_size(data, DATE_TIME_SIZE)
        return date_time_at(data, 0)
    except FieldError as exc:
        raise DateTimeParseError(DATE_TIME, exc.reason) from None


def encode_date_time(t: DeviceTime) -> bytes:
    return pack_date_time(t)


class DayOfWeek(IntEnum):
    UNKNOWN = 0
    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


class AdjustReason(IntFlag):
    """Why the device's clock was last changed (Current Time, last byte)."""

    MANUAL = 0x01
    EXTERNAL_REFERENCE = 0x02
    TIME_ZONE_CHANGE = 0x04
    DST_CHANGE = 0x08


_ADJUST_DEFINED = 0x0F


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time 0x2A2B: read to learn a device clock's offset, written to set it."""

    time: DeviceTime
    day_of_week: DayOfWeek
    fractions256: int
    """1/256ths of a second."""
    adjust_reason: AdjustReason

    @classmethod
    def of(
        cls, wall: datetime, reason: AdjustReason = AdjustReason.EXTERNAL_REFERENCE
    ) -> CurrentTime:
        """What to write to set a device clock to the wall-clock time ``wall``."""
        return cls(
            time=DeviceTime.of(wall),
            day_of_week=DayOfWeek(wall.isoweekday()),
            fractions256=wall.microsecond * 256 // 1_000_000,
            adjust_reason=reason,
        )


def decode_current_time(data: Frame) -> CurrentTime:
    """Current Time 0x2A2B: Date Time, day of week, fractions of 1/256 s, adjust reason."""
    try:
        check_size(data, CURRENT_TIME_SIZE)
        time = date_time_at(data, 0)
        weekday, fractions, reason = data[7], data[8], data[9]
        if weekday > DayOfWeek.SUNDAY:
            raise FieldError(f"day of week {weekday} is reserved (1-7, 0 = unknown)")
        if reason & ~_ADJUST_DEFINED:
            raise FieldError(f"adjust reason 0x{reason:02X} sets reserved bits")
    except FieldError as exc:
        raise DateTimeParseError(CURRENT_TIME, exc.reason) from None
    return CurrentTime(time, DayOfWeek(weekday), fractions, AdjustReason(reason))


def encode_current_time(value: CurrentTime) -> bytes:
    """The 10 bytes to write to Current Time; ValueError for fields a decoder would refuse."""
    if not 0 <= value.fractions256 <= 0xFF:
        raise ValueError("fractions256 outside 0-255")
    if int(value.adjust_reason) & ~_ADJUST_DEFINED:
        raise ValueError("adjust reason sets reserved bits")
    return pack_date_time(value.time) + bytes(
        (int(value.day_of_week), value.fractions256, int(value.adjust_reason))
    )
