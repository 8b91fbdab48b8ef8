"""Weight Measurement 0x2A9D and Weight Scale Feature 0x2A9E (standards.md §3.4.3).

The weight is a uint16 count of 0.005 kg (SI) or 0.01 lb (imperial), not an SFLOAT;
``0xFFFF`` means the measurement was unsuccessful. BMI counts 0.1 kg/m², height 0.001 m
or 0.1 in. The scale's own resolution, from Weight Scale Feature, is usually coarser
than the field's: a value is rounded to it (half to even) so 72.500 kg from a 0.1 kg
scale is reported as 72.5, the precision the scale really has.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import IntEnum, StrEnum

from drivers.ble._frame import (
    FieldError,
    Frame,
    check_flags,
    check_length,
    check_size,
    first_byte,
    pack_u8,
    pack_u16,
    u16,
    u32,
)
from drivers.ble.date_time import DATE_TIME_SIZE, DeviceTime, date_time_at, pack_date_time
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import WEIGHT_MEASUREMENT, WEIGHT_SCALE_FEATURE
from drivers.ble.ieee11073 import EXACT, UNSUCCESSFUL, Numeric, Value


class WeightParseError(BleParseError):
    """A Weight Measurement or Weight Scale Feature frame that cannot be used."""


class MassUnit(StrEnum):
    KILOGRAM = "kg"
    POUND = "[lb_av]"


class LengthUnit(StrEnum):
    METRE = "m"
    INCH = "[in_i]"


class WeightResolution(IntEnum):
    """Weight Scale Feature bits 3-6: the scale's weight resolution (SI / imperial)."""

    NOT_SPECIFIED = 0
    KG_0_5_OR_LB_1 = 1
    KG_0_2_OR_LB_0_5 = 2
    KG_0_1_OR_LB_0_2 = 3
    KG_0_05_OR_LB_0_1 = 4
    KG_0_02_OR_LB_0_05 = 5
    KG_0_01_OR_LB_0_02 = 6
    KG_0_005_OR_LB_0_01 = 7

    def step(self, unit: MassUnit) -> Decimal | None:
        """The resolution in ``unit``, or None when not specified."""
        steps = _WEIGHT_STEPS.get(self)
        if steps is None:
            return None
        return steps[0] if unit is MassUnit.KILOGRAM else steps[1]


class HeightResolution(IntEnum):
    """Weight Scale Feature bits 7-9: the scale's height resolution (SI / imperial)."""

    NOT_SPECIFIED = 0
    M_0_01_OR_IN_1 = 1
    M_0_005_OR_IN_0_5 = 2
    M_0_001_OR_IN_0_1 = 3

    def step(self, unit: LengthUnit) -> Decimal | None:
        steps = _HEIGHT_STEPS.get(self)
        if steps is None:
            return None
        return steps[0] if unit is LengthUnit.METRE else steps[1]


_WEIGHT_STEPS = {
    WeightResolution.KG_0_5_OR_LB_1: (Decimal("0.5"), Decimal("1")),
    WeightResolution.KG_0_2_OR_LB_0_5: (Decimal("0.2"), Decimal("0.5")),
    WeightResolution.KG_0_1_OR_LB_0_2: (Decimal("0.1"), Decimal("0.2")),
    WeightResolution.KG_0_05_OR_LB_0_1: (Decimal("0.05"), Decimal("0.1")),
    WeightResolution.KG_0_02_OR_LB_0_05: (Decimal("0.02"), Decimal("0.05")),
    WeightResolution.KG_0_01_OR_LB_0_02: (Decimal("0.01"), Decimal("0.02")),
    WeightResolution.KG_0_005_OR_LB_0_01: (Decimal("0.005"), Decimal("0.01")),
}
_HEIGHT_STEPS = {
    HeightResolution.M_0_01_OR_IN_1: (Decimal("0.01"), Decimal("1")),
    HeightResolution.M_0_005_OR_IN_0_5: (Decimal("0.005"), Decimal("0.5")),
    HeightResolution.M_0_001_OR_IN_0_1: (Decimal("0.001"), Decimal("0.1")),
}

WEIGHT_UNSUCCESSFUL = 0xFFFF
UNKNOWN_USER = 0xFF

_IMPERIAL = 0x01
_TIMESTAMP = 0x02
_USER_ID = 0x04
_BMI_HEIGHT = 0x08
_DEFINED = 0x0F


def _size(flags: int) -> int:
    return (
        3
        + (DATE_TIME_SIZE if flags & _TIMESTAMP else 0)
        + (1 if flags & _USER_ID else 0)
        + (4 if flags & _BMI_HEIGHT else 0)
    )


_SIZES = tuple(_size(flags) for flags in range(_DEFINED + 1))


def _round(value: Numeric, step: Decimal | None) -> Numeric:
    if step is None:
        return value
    counted = EXACT.divide(value.decimal, step).to_integral_value(ROUND_HALF_EVEN, EXACT)
    return Numeric.of(EXACT.multiply(counted, step))


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    """The raw counts as sent; the properties give them as numbers in their units."""

    imperial: bool
    weight_raw: int
    """0.005 kg or 0.01 lb per count; 0xFFFF = measurement unsuccessful."""
    timestamp: DeviceTime | None = None
    user_id: int | None = None
    """0-254 for a user of a shared scale, 255 when not known."""
    bmi_raw: int | None = None
    """0.1 kg/m² per count; present together with ``height_raw``."""
    height_raw: int | None = None
    """0.001 m or 0.1 in per count."""

    @property
    def mass_unit(self) -> MassUnit:
        return MassUnit.POUND if self.imperial else MassUnit.KILOGRAM

    @property
    def length_unit(self) -> LengthUnit:
        return LengthUnit.INCH if self.imperial else LengthUnit.METRE

    @property
    def weight(self) -> Value:
        """At the field's resolution: 14500 → 72.500 kg."""
        if self.weight_raw == WEIGHT_UNSUCCESSFUL:
            return UNSUCCESSFUL
        if self.imperial:
            return Numeric(self.weight_raw, -2)
        return Numeric(self.weight_raw * 5, -3)

    @property
    def bmi(self) -> Numeric | None:
        return None if self.bmi_raw is None else Numeric(self.bmi_raw, -1)

    @property
    def height(self) -> Numeric | None:
        if self.height_raw is None:
            return None
        return Numeric(self.height_raw, -1 if self.imperial else -3)

    def weight_at(self, resolution: WeightResolution) -> Value:
        """The weight rounded to the scale's resolution (unchanged when not specified)."""
        weight = self.weight
        if isinstance(weight, Numeric):
            return _round(weight, resolution.step(self.mass_unit))
        return weight

    def height_at(self, resolution: HeightResolution) -> Numeric | None:
        height = self.height
        if height is None:
            return None
        return _round(height, resolution.step(self.length_unit))


def decode_weight(data: Frame) -> WeightMeasurement:
    """Weight Measurement 0x2A9D."""
    try:
        flags = first_byte(data)
        check_flags(flags, _DEFINED)
        check_length(data, _SIZES[flags], flags)
        offset = 3
        timestamp = user_id = bmi = height = None
        if flags & _TIMESTAMP:
            timestamp = date_time_at(data, offset)
            offset += DATE_TIME_SIZE
        if flags & _USER_ID:
            user_id = data[offset]
            offset += 1
        if flags & _BMI_HEIGHT:
            bmi = u16(data, offset)
            height = u16(data, offset + 2)
    except FieldError as exc:
        raise WeightParseError(WEIGHT_MEASUREMENT, exc.reason) from None
    return WeightMeasurement(
        imperial=bool(flags & _IMPERIAL),
        weight_raw=u16(data, 1),
        timestamp=timestamp,
        user_id=user_id,
        bmi_raw=bmi,
        height_raw=height,
    )


def encode_weight(m: WeightMeasurement) -> bytes:
    """The frame a scale would send for ``m``."""
    if (m.bmi_raw is None) != (m.height_raw is None):
        raise ValueError("BMI and height travel together")
    flags = _IMPERIAL if m.imperial else 0
    tail = b""
    if m.timestamp is not None:
        flags |= _TIMESTAMP
        tail += pack_date_time(m.timestamp)
    if m.user_id is not None:
        flags |= _USER_ID
        tail += pack_u8(m.user_id)
    if m.bmi_raw is not None and m.height_raw is not None:
        flags |= _BMI_HEIGHT
        tail += pack_u16(m.bmi_raw) + pack_u16(m.height_raw)
    return bytes((flags,)) + pack_u16(m.weight_raw) + tail


@dataclass(frozen=True, slots=True)
class WeightScaleFeature:
    """What a scale supports, read once after connecting."""

    timestamp_supported: bool
    multiple_users_supported: bool
    bmi_supported: bool
    weight_resolution: WeightResolution
    height_resolution: HeightResolution


_FEATURE_DEFINED = 0x3FF


def decode_weight_scale_feature(data: Frame) -> WeightScaleFeature:
    """Weight Scale Feature 0x2A9E (uint32); reserved bits and resolution codes are refused."""
    try:
        check_size(data, 4)
        raw = u32(data, 0)
        if raw & ~_FEATURE_DEFINED:
            raise FieldError(f"feature bits 0x{raw:08X} set reserved bits")
        weight_code, height_code = (raw >> 3) & 0xF, (raw >> 7) & 0x7
        if weight_code > WeightResolution.KG_0_005_OR_LB_0_01:
            raise FieldError(f"weight resolution code {weight_code} is reserved")
        if height_code > HeightResolution.M_0_001_OR_IN_0_1:
            raise FieldError(f"height resolution code {height_code} is reserved")
    except FieldError as exc:
        raise WeightParseError(WEIGHT_SCALE_FEATURE, exc.reason) from None
    return WeightScaleFeature(
        timestamp_supported=bool(raw & 0x1),
        multiple_users_supported=bool(raw & 0x2),
        bmi_supported=bool(raw & 0x4),
        weight_resolution=WeightResolution(weight_code),
        height_resolution=HeightResolution(height_code),
    )


def encode_weight_scale_feature(feature: WeightScaleFeature) -> bytes:
    raw = (
        int(feature.timestamp_supported)
        | int(feature.multiple_users_supported) << 1
        | int(feature.bmi_supported) << 2
        | int(feature.weight_resolution) << 3
        | int(feature.height_resolution) << 7
    )
    return raw.to_bytes(4, "little")
