"""Blood Pressure Measurement 0x2A35 and Intermediate Cuff Pressure 0x2A36 (§3.4.1).

Both share one layout: flags, systolic, diastolic and mean arterial pressure (SFLOAT),
then the optional timestamp, pulse rate, user id and measurement status the flags
announce. In an Intermediate Cuff Pressure frame the systolic field carries the current
cuff pressure while the cuff inflates; it is progress, not a measurement.

Reserved flag bits are refused (they could announce a field we cannot place). Reserved
*status* bits are kept but mean nothing: one vendor sets bits 6-7, and refusing those
frames would lose real measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag, StrEnum

from drivers.ble._frame import (
    FieldError,
    Frame,
    check_flags,
    check_length,
    first_byte,
    pack_u8,
    pack_u16,
    u16,
)
from drivers.ble.date_time import DATE_TIME_SIZE, DeviceTime, date_time_at, pack_date_time
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import BLOOD_PRESSURE_MEASUREMENT, INTERMEDIATE_CUFF_PRESSURE, Characteristic
from drivers.ble.ieee11073 import Value, pack_sfloat, sfloat_at
from drivers.ble.quality import QualityFlag


class BloodPressureParseError(BleParseError):
    """A Blood Pressure Measurement or Intermediate Cuff Pressure frame that cannot be used."""


class PressureUnit(StrEnum):
    """The unit of all three pressures, as its UCUM code."""

    MMHG = "mm[Hg]"
    KPA = "kPa"


class BloodPressureStatus(IntFlag):
    """Measurement status bits as sent; bits 3-4 together are the pulse-rate range."""

    BODY_MOVEMENT = 0x0001
    CUFF_TOO_LOOSE = 0x0002
    IRREGULAR_PULSE = 0x0004
    PULSE_RATE_ABOVE_UPPER = 0x0008
    PULSE_RATE_BELOW_LOWER = 0x0010
    IMPROPER_POSITION = 0x0020


class PulseRateRange(IntEnum):
    WITHIN = 0
    ABOVE_UPPER = 1
    BELOW_LOWER = 2
    RESERVED = 3


UNKNOWN_USER = 0xFF

_UNIT_KPA = 0x01
_TIMESTAMP = 0x02
_PULSE_RATE = 0x04
_USER_ID = 0x08
_STATUS = 0x10
_DEFINED = 0x1F


def _size(flags: int) -> int:
    return (
        7
        + (DATE_TIME_SIZE if flags & _TIMESTAMP else 0)
        + (2 if flags & _PULSE_RATE else 0)
        + (1 if flags & _USER_ID else 0)
        + (2 if flags & _STATUS else 0)
    )


_SIZES = tuple(_size(flags) for flags in range(_DEFINED + 1))

_STATUS_QUALITY = (
    (BloodPressureStatus.BODY_MOVEMENT, QualityFlag.BODY_MOVEMENT),
    (BloodPressureStatus.CUFF_TOO_LOOSE, QualityFlag.CUFF_LOOSE),
    (BloodPressureStatus.IRREGULAR_PULSE, QualityFlag.IRREGULAR_PULSE),
    (BloodPressureStatus.IMPROPER_POSITION, QualityFlag.IMPROPER_POSITION),
)


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    """One decoded frame; optional fields are None when the flags leave them out."""

    unit: PressureUnit
    systolic: Value
    """In an intermediate frame: the current cuff pressure."""
    diastolic: Value
    mean_arterial: Value
    timestamp: DeviceTime | None = None
    pulse_rate: Value | None = None
    """Beats per minute."""
    user_id: int | None = None
    """0-254 for a user of a shared monitor, 255 (:data:`UNKNOWN_USER`) when not known."""
    status: BloodPressureStatus | None = None
    intermediate: bool = False
    """True for Intermediate Cuff Pressure 0x2A36."""

    @property
    def pulse_rate_range(self) -> PulseRateRange | None:
        if self.status is None:
            return None
        return PulseRateRange((int(self.status) >> 3) & 0x3)

    @property
    def quality(self) -> frozenset[QualityFlag]:
        """Body movement, cuff fit, irregular pulse, position and pulse-rate range."""
        status = self.status
        if not status:
            return frozenset()
        flags = {quality for bit, quality in _STATUS_QUALITY if status & bit}
        pulse_range = self.pulse_rate_range
        if pulse_range is PulseRateRange.ABOVE_UPPER:
            flags.add(QualityFlag.PULSE_ABOVE_RANGE)
        elif pulse_range is PulseRateRange.BELOW_LOWER:
            flags.add(QualityFlag.PULSE_BELOW_RANGE)
        return frozenset(flags)


def decode_blood_pressure(data: Frame) -> BloodPressureMeasurement:
    """Blood Pressure Measurement 0x2A35."""
    return _decode(data, BLOOD_PRESSURE_MEASUREMENT, intermediate=False)


def decode_intermediate_cuff_pressure(data: Frame) -> BloodPressureMeasurement:
    """Intermediate Cuff Pressure 0x2A36: the same layout, marked ``intermediate``."""
    return _decode(data, INTERMEDIATE_CUFF_PRESSURE, intermediate=True)


def _decode(
    data: Frame, characteristic: Characteristic, *, intermediate: bool
) -> BloodPressureMeasurement:
    try:
        flags = first_byte(data)
        check_flags(flags, _DEFINED)
        check_length(data, _SIZES[flags], flags)
        offset = 7
        timestamp = pulse_rate = user_id = status = None
        if flags & _TIMESTAMP:
            timestamp = date_time_at(data, offset)
            offset += DATE_TIME_SIZE
        if flags & _PULSE_RATE:
            pulse_rate = sfloat_at(data, offset)
            offset += 2
        if flags & _USER_ID:
            user_id = data[offset]
            offset += 1
        if flags & _STATUS:
            status = BloodPressureStatus(u16(data, offset))
    except FieldError as exc:
        raise BloodPressureParseError(characteristic, exc.reason) from None
    return BloodPressureMeasurement(
        unit=PressureUnit.KPA if flags & _UNIT_KPA else PressureUnit.MMHG,
        systolic=sfloat_at(data, 1),
        diastolic=sfloat_at(data, 3),
        mean_arterial=sfloat_at(data, 5),
        timestamp=timestamp,
        pulse_rate=pulse_rate,
        user_id=user_id,
        status=status,
        intermediate=intermediate,
    )


def encode_blood_pressure(m: BloodPressureMeasurement) -> bytes:
    """The frame a device would send for ``m`` (for simulators and round-trip tests)."""
    flags = _UNIT_KPA if m.unit is PressureUnit.KPA else 0
    tail = b""
    if m.timestamp is not None:
        flags |= _TIMESTAMP
        tail += pack_date_time(m.timestamp)
    if m.pulse_rate is not None:
        flags |= _PULSE_RATE
        tail += pack_sfloat(m.pulse_rate)
    if m.user_id is not None:
        flags |= _USER_ID
        tail += pack_u8(m.user_id)
    if m.status is not None:
        flags |= _STATUS
        tail += pack_u16(int(m.status))
    return (
        bytes((flags,))
        + pack_sfloat(m.systolic)
        + pack_sfloat(m.diastolic)
        + pack_sfloat(m.mean_arterial)
        + tail
    )
