"""Date Time and Current Time: setting a device clock, and what the decoders refuse."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from drivers.ble.date_time import (
    AdjustReason,
    CurrentTime,
    DayOfWeek,
    DeviceTime,
    decode_current_time,
    encode_current_time,
    encode_date_time,
)
from tests.drivers.ble.codecs import frame


def test_setting_a_device_clock_writes_its_wall_clock_time() -> None:
    now = datetime(2025, 3, 14, 8, 30, 0, 500_000)
    value = CurrentTime.of(now)
    assert value.day_of_week is DayOfWeek.FRIDAY
    assert encode_current_time(value) == frame("E907030E081E00 05 80 02")
    assert decode_current_time(encode_current_time(value)) == value


def test_an_aware_time_is_written_as_its_own_wall_clock() -> None:
    oslo_summer = timezone(timedelta(hours=2))
    value = CurrentTime.of(datetime(2025, 7, 1, 12, 0, tzinfo=oslo_summer), AdjustReason.MANUAL)
    assert value.time == DeviceTime(2025, 7, 1, 12, 0, 0)
    assert encode_current_time(value)[-1] == AdjustReason.MANUAL


def test_unknown_dates_have_no_datetime() -> None:
    assert DeviceTime(0, 3, 14, 8, 30, 0).as_datetime is None
    assert DeviceTime(2025, 0, 14, 8, 30, 0).as_datetime is None
    assert DeviceTime(2025, 3, 0, 8, 30, 0).as_datetime is None
    assert DeviceTime(2025, 3, 14, 8, 30, 0).as_datetime == datetime(2025, 3, 14, 8, 30)


@pytest.mark.parametrize(
    "bad",
    [
        DeviceTime(2025, 13, 1, 0, 0, 0),
        DeviceTime(2025, 2, 29, 0, 0, 0),
        DeviceTime(1581, 1, 1, 0, 0, 0),
        DeviceTime(2025, 1, 1, 24, 0, 0),
    ],
)
def test_encoders_refuse_impossible_times(bad: DeviceTime) -> None:
    with pytest.raises(ValueError):
        encode_date_time(bad)


def test_current_time_encoder_refuses_reserved_fields() -> None:
    base = CurrentTime.of(datetime(2025, 3, 14))
    with pytest.raises(ValueError):
        encode_current_time(CurrentTime(base.time, base.day_of_week, 256, base.adjust_reason))
    with pytest.raises(ValueError):
        encode_current_time(CurrentTime(base.time, base.day_of_week, 0, AdjustReason(0x10)))
