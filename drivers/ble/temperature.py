"""Temperature Measurement 0x2A1C and Temperature Type 0x2A1D (standards.md §3.4.2).

The temperature is a 32-bit FLOAT, so ``0xFF00016C`` stays 364 × 10⁻¹ °C. The
measurement site comes either inside the measurement (flag bit 2) or from the separate
Temperature Type characteristic; codes outside 1-9 are reserved and refused, since a
site nobody defined cannot be reported as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from drivers.ble._frame import FieldError, Frame, check_flags, check_length, check_size, first_byte
from drivers.ble.date_time import DATE_TIME_SIZE, DeviceTime, date_time_at, pack_date_time
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import TEMPERATURE_MEASUREMENT, TEMPERATURE_TYPE
from drivers.ble.ieee11073 import Value, float_at, pack_float


class TemperatureParseError(BleParseError):
    """A Temperature Measurement or Temperature Type frame that cannot be used."""


class TemperatureUnit(StrEnum):
    """The unit as its UCUM code."""

    CELSIUS = "Cel"
    FAHRENHEIT = "[degF]"


class TemperatureType(IntEnum):
    """Where on the body the temperature was taken."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    """Usually the earlobe."""
    FINGER = 4
    GASTROINTESTINAL = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9
    """The ear drum."""


_FAHRENHEIT = 0x01
_TIMESTAMP = 0x02
_TYPE = 0x04
_DEFINED = 0x07


def _size(flags: int) -> int:
    return 5 + (DATE_TIME_SIZE if flags & _TIMESTAMP else 0) + (1 if flags & _TYPE else 0)


_SIZES = tuple(_size(flags) for flags in range(_DEFINED + 1))


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    unit: TemperatureUnit
    temperature: Value
    timestamp: DeviceTime | None = None
    type: TemperatureType | None = None


def _temperature_type(code: int) -> TemperatureType:
    if not TemperatureType.ARMPIT <= code <= TemperatureType.TYMPANUM:
        raise FieldError(f"temperature type {code} is reserved (1-9)")
    return TemperatureType(code)


def decode_temperature(data: Frame) -> TemperatureMeasurement:
    """Temperature Measurement 0x2A1C."""
    try:
        flags = first_byte(data)
        check_flags(flags, _DEFINED)
        check_length(data, _SIZES[flags], flags)
        offset = 5
        timestamp = None
        if flags & _TIMESTAMP:
            timestamp = date_time_at(data, offset)
            offset += DATE_TIME_SIZE
        site = _temperature_type(data[offset]) if flags & _TYPE else None
    except FieldError as exc:
        raise TemperatureParseError(TEMPERATURE_MEASUREMENT, exc.reason) from None
    return TemperatureMeasurement(
        unit=TemperatureUnit.FAHRENHEIT if flags & _FAHRENHEIT else TemperatureUnit.CELSIUS,
        temperature=float_at(data, 1),
        timestamp=timestamp,
        type=site,
    )


def decode_temperature_type(data: Frame) -> TemperatureType:
    """Temperature Type 0x2A1D: one byte, read once when measurements leave it out."""
    try:
        check_size(data, 1)
        return _temperature_type(data[0])
    except FieldError as exc:
        raise TemperatureParseError(TEMPERATURE_TYPE, exc.reason) from None


def encode_temperature(m: TemperatureMeasurement) -> bytes:
    """The frame a thermometer would send for ``m``."""
    flags = _FAHRENHEIT if m.unit is TemperatureUnit.FAHRENHEIT else 0
    tail = b""
    if m.timestamp is not None:
        flags |= _TIMESTAMP
        tail += pack_date_time(m.timestamp)
    if m.type is not None:
        flags |= _TYPE
        tail += bytes((int(m.type),))
    return bytes((flags,)) + pack_float(m.temperature) + tail
