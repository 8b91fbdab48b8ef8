"""Battery Level 0x2A19: one byte, a percentage (standards.md §3.2)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.ble._frame import FieldError, Frame, check_size
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import BATTERY_LEVEL


class BatteryParseError(BleParseError):
    """A Battery Level frame that cannot be used."""


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    percent: int
    """0-100."""


def decode_battery_level(data: Frame) -> BatteryLevel:
    """Battery Level 0x2A19; values above 100 are reserved and refused."""
    try:
        check_size(data, 1)
        if data[0] > 100:
            raise FieldError(f"level {data[0]} is above 100 %")
    except FieldError as exc:
        raise BatteryParseError(BATTERY_LEVEL, exc.reason) from None
    return BatteryLevel(data[0])


def encode_battery_level(level: BatteryLevel) -> bytes:
    if not 0 <= level.percent <= 100:
        raise ValueError("a battery level is 0-100 %")
    return bytes((level.percent,))
