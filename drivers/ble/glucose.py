"""Glucose Measurement 0x2A18 and Glucose Measurement Context 0x2A34 (§3.4.4).

A meter keeps its records and sends them, after a Record Access Control Point request
(:mod:`drivers.ble.racp`), as measurement notifications each followed by its context
when flag bit 4 says one follows; the two share a sequence number, which is also what
the driver persists to fetch only new records after a reconnect.

Concentrations come in kg/L or mol/L as SFLOAT; :meth:`GlucoseMeasurement.display`
gives them in mg/dL (× 10⁵) or mmol/L (× 10³) by shifting the exponent, so no digit is
invented or lost. Sample types and locations, meal and the other context codes outside
their defined lists are refused; status annunciation bits are kept as sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, IntFlag, StrEnum
from typing import TypeVar

from drivers.ble._frame import (
    FieldError,
    Frame,
    check_flags,
    check_length,
    first_byte,
    pack_s16,
    pack_u8,
    pack_u16,
    s16,
    u16,
)
from drivers.ble.date_time import DATE_TIME_SIZE, DeviceTime, date_time_at, pack_date_time
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import GLUCOSE_MEASUREMENT, GLUCOSE_MEASUREMENT_CONTEXT
from drivers.ble.ieee11073 import Numeric, Value, pack_sfloat, sfloat_at
from drivers.ble.quality import QualityFlag


class GlucoseParseError(BleParseError):
    """A Glucose Measurement or Glucose Measurement Context frame that cannot be used."""


class GlucoseUnit(StrEnum):
    """The unit the concentration field is in (flag bit 2)."""

    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"

    @property
    def display_unit(self) -> str:
        """The UCUM unit nurses read: mg/dL or mmol/L."""
        return "mg/dL" if self is GlucoseUnit.KG_PER_L else "mmol/L"

    @property
    def display_shift(self) -> int:
        """Powers of ten from the field unit to the display unit."""
        return 5 if self is GlucoseUnit.KG_PER_L else 3


class SampleType(IntEnum):
    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class SampleLocation(IntEnum):
    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    NOT_AVAILABLE = 15


class GlucoseStatus(IntFlag):
    """Sensor status annunciation (GLS 1.0); bits 12-15 are reserved and kept as sent."""

    BATTERY_LOW = 0x0001
    SENSOR_MALFUNCTION = 0x0002
    SAMPLE_SIZE_INSUFFICIENT = 0x0004
    STRIP_INSERTION_ERROR = 0x0008
    STRIP_TYPE_INCORRECT = 0x0010
    RESULT_TOO_HIGH = 0x0020
    """Higher than the device can process."""
    RESULT_TOO_LOW = 0x0040
    TEMPERATURE_TOO_HIGH = 0x0080
    TEMPERATURE_TOO_LOW = 0x0100
    READ_INTERRUPTED = 0x0200
    """Strip pulled too soon."""
    GENERAL_DEVICE_FAULT = 0x0400
    TIME_FAULT = 0x0800


_STATUS_QUALITY = (
    (GlucoseStatus.SENSOR_MALFUNCTION, QualityFlag.SENSOR_FAULT),
    (GlucoseStatus.SAMPLE_SIZE_INSUFFICIENT, QualityFlag.INVALID),
    (GlucoseStatus.STRIP_INSERTION_ERROR, QualityFlag.INVALID),
    (GlucoseStatus.STRIP_TYPE_INCORRECT, QualityFlag.INVALID),
    (GlucoseStatus.RESULT_TOO_HIGH, QualityFlag.ABOVE_DEVICE_RANGE),
    (GlucoseStatus.RESULT_TOO_LOW, QualityFlag.BELOW_DEVICE_RANGE),
    (GlucoseStatus.TEMPERATURE_TOO_HIGH, QualityFlag.QUESTIONABLE),
    (GlucoseStatus.TEMPERATURE_TOO_LOW, QualityFlag.QUESTIONABLE),
    (GlucoseStatus.READ_INTERRUPTED, QualityFlag.INVALID),
    (GlucoseStatus.GENERAL_DEVICE_FAULT, QualityFlag.SENSOR_FAULT),
    (GlucoseStatus.TIME_FAULT, QualityFlag.CLOCK_FAULT),
)
"""Battery low is device health, not measurement quality; the driver reads it from status."""

_TIME_OFFSET = 0x01
_CONCENTRATION = 0x02
_MOL_PER_L = 0x04
_STATUS = 0x08
_CONTEXT_FOLLOWS = 0x10
_DEFINED = 0x1F


def _size(flags: int) -> int:
    return (
        3
        + DATE_TIME_SIZE
        + (2 if flags & _TIME_OFFSET else 0)
        + (3 if flags & _CONCENTRATION else 0)
        + (2 if flags & _STATUS else 0)
    )


_SIZES = tuple(_size(flags) for flags in range(_DEFINED + 1))


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    sequence: int
    """The record's number on the meter: pairs it with its context, and marks what was fetched."""
    base_time: DeviceTime
    unit: GlucoseUnit
    time_offset: int | None = None
    """Minutes to add to ``base_time`` (the meter's clock was changed after the base)."""
    concentration: Value | None = None
    """In ``unit``; None when the record carries no concentration (flag bit 1 clear)."""
    sample_type: SampleType | None = None
    sample_location: SampleLocation | None = None
    status: GlucoseStatus | None = None
    context_follows: bool = False

    @property
    def measured_at(self) -> datetime | None:
        """Base time plus offset, as the meter's clock showed it; None when not known."""
        base = self.base_time.as_datetime
        if base is None:
            return None
        try:
            return base + timedelta(minutes=self.time_offset or 0)
        except OverflowError:
            return None  # an offset past year 9999: a broken clock, no usable time

    def display(self) -> Value | None:
        """The concentration in mg/dL or mmol/L (:attr:`GlucoseUnit.display_unit`)."""
        value = self.concentration
        if isinstance(value, Numeric):
            return Numeric(value.mantissa, value.exponent + self.unit.display_shift)
        return value

    @property
    def quality(self) -> frozenset[QualityFlag]:
        flags: set[QualityFlag] = set()
        if self.status:
            flags.update(quality for bit, quality in _STATUS_QUALITY if self.status & bit)
        if (
            self.sample_type is SampleType.CONTROL_SOLUTION
            or self.sample_location is SampleLocation.CONTROL_SOLUTION
        ):
            flags.add(QualityFlag.CONTROL_SOLUTION)
        return frozenset(flags)


def decode_glucose(data: Frame) -> GlucoseMeasurement:
    """Glucose Measurement 0x2A18."""
    try:
        flags = first_byte(data)
        check_flags(flags, _DEFINED)
        check_length(data, _SIZES[flags], flags)
        base_time = date_time_at(data, 3)
        offset = 3 + DATE_TIME_SIZE
        time_offset = concentration = sample_type = location = status = None
        if flags & _TIME_OFFSET:
            time_offset = s16(data, offset)
            offset += 2
        if flags & _CONCENTRATION:
            concentration = sfloat_at(data, offset)
            sample_type, location = _type_and_location(data[offset + 2])
            offset += 3
        if flags & _STATUS:
            status = GlucoseStatus(u16(data, offset))
    except FieldError as exc:
        raise GlucoseParseError(GLUCOSE_MEASUREMENT, exc.reason) from None
    return GlucoseMeasurement(
        sequence=u16(data, 1),
        base_time=base_time,
        unit=GlucoseUnit.MOL_PER_L if flags & _MOL_PER_L else GlucoseUnit.KG_PER_L,
        time_offset=time_offset,
        concentration=concentration,
        sample_type=sample_type,
        sample_location=location,
        status=status,
        context_follows=bool(flags & _CONTEXT_FOLLOWS),
    )


_LOCATIONS = frozenset(int(location) for location in SampleLocation)


def _type_and_location(code: int) -> tuple[SampleType, SampleLocation]:
    """Low nibble: sample type; high nibble: sample location."""
    kind, where = code & 0x0F, code >> 4
    if not SampleType.CAPILLARY_WHOLE_BLOOD <= kind <= SampleType.CONTROL_SOLUTION:
        raise FieldError(f"sample type {kind} is reserved (1-10)")
    if where not in _LOCATIONS:
        raise FieldError(f"sample location {where} is reserved (1-4, 15)")
    return SampleType(kind), SampleLocation(where)


def encode_glucose(m: GlucoseMeasurement) -> bytes:
    """The notification a meter would send for ``m``."""
    flags = _MOL_PER_L if m.unit is GlucoseUnit.MOL_PER_L else 0
    if m.context_follows:
        flags |= _CONTEXT_FOLLOWS
    tail = b""
    if m.time_offset is not None:
        flags |= _TIME_OFFSET
        tail += pack_s16(m.time_offset)
    if m.concentration is not None:
        if m.sample_type is None or m.sample_location is None:
            raise ValueError("a concentration travels with its sample type and location")
        flags |= _CONCENTRATION
        tail += pack_sfloat(m.concentration)
        tail += bytes((int(m.sample_location) << 4 | int(m.sample_type),))
    elif m.sample_type is not None or m.sample_location is not None:
        raise ValueError("sample type and location travel with a concentration")
    if m.status is not None:
        flags |= _STATUS
        tail += pack_u16(int(m.status))
    return bytes((flags,)) + pack_u16(m.sequence) + pack_date_time(m.base_time) + tail


# --- Glucose Measurement Context 0x2A34 --------------------------------------------------


class Carbohydrate(IntEnum):
    BREAKFAST = 1
    LUNCH = 2
    DINNER = 3
    SNACK = 4
    DRINK = 5
    SUPPER = 6
    BRUNCH = 7


class Meal(IntEnum):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5


class Tester(IntEnum):
    SELF = 1
    HEALTH_CARE_PROFESSIONAL = 2
    LAB_TEST = 3
    NOT_AVAILABLE = 15


class Health(IntEnum):
    MINOR_ISSUES = 1
    MAJOR_ISSUES = 2
    DURING_MENSES = 3
    UNDER_STRESS = 4
    NO_ISSUES = 5
    NOT_AVAILABLE = 15


class Medication(IntEnum):
    RAPID_ACTING_INSULIN = 1
    SHORT_ACTING_INSULIN = 2
    INTERMEDIATE_ACTING_INSULIN = 3
    LONG_ACTING_INSULIN = 4
    PRE_MIXED_INSULIN = 5


class MedicationUnit(StrEnum):
    KILOGRAM = "kg"
    LITRE = "L"


EXERCISE_OVERRUN = 0xFFFF
"""Exercise duration: longer than the field can count."""

_CARBOHYDRATE = 0x01
_MEAL = 0x02
_TESTER_HEALTH = 0x04
_EXERCISE = 0x08
_MEDICATION = 0x10
_MEDICATION_LITRE = 0x20
_HBA1C = 0x40
_EXTENDED = 0x80


def _context_size(flags: int) -> int:
    return (
        3
        + (1 if flags & _EXTENDED else 0)
        + (3 if flags & _CARBOHYDRATE else 0)
        + (1 if flags & _MEAL else 0)
        + (1 if flags & _TESTER_HEALTH else 0)
        + (3 if flags & _EXERCISE else 0)
        + (3 if flags & _MEDICATION else 0)
        + (2 if flags & _HBA1C else 0)
    )


_CONTEXT_SIZES = tuple(_context_size(flags) for flags in range(256))


@dataclass(frozen=True, slots=True)
class GlucoseContext:
    """What the person entered on the meter about a measurement (same sequence number)."""

    sequence: int
    medication_unit: MedicationUnit
    """Flag bit 5; kept even without a medication field so the frame round-trips."""
    extended_flags: int | None = None
    """Present when flag bit 7 is set; always 0 (every extended bit is reserved)."""
    carbohydrate: Carbohydrate | None = None
    carbohydrate_amount: Value | None = None
    """In kilograms."""
    meal: Meal | None = None
    tester: Tester | None = None
    health: Health | None = None
    exercise_duration: int | None = None
    """Seconds; 65535 (:data:`EXERCISE_OVERRUN`) for longer."""
    exercise_intensity: int | None = None
    """Percent, 0-100."""
    medication: Medication | None = None
    medication_amount: Value | None = None
    """In ``medication_unit``."""
    hba1c: Value | None = None
    """Percent."""


_E = TypeVar("_E", bound=IntEnum)


def _enum_code(kind: type[_E], code: int, what: str) -> _E:
    try:
        return kind(code)
    except ValueError:
        raise FieldError(f"{what} {code} is reserved") from None


def decode_glucose_context(data: Frame) -> GlucoseContext:
    """Glucose Measurement Context 0x2A34; optional fields come in flag order."""
    try:
        flags = first_byte(data)
        check_length(data, _CONTEXT_SIZES[flags], flags)
        offset = 3
        extended = carb = carb_amount = meal = tester = health = None
        duration = intensity = medication = medication_amount = hba1c = None
        if flags & _EXTENDED:
            extended = data[offset]
            if extended:
                raise FieldError(f"extended flags 0x{extended:02X} set reserved bits")
            offset += 1
        if flags & _CARBOHYDRATE:
            carb = _enum_code(Carbohydrate, data[offset], "carbohydrate id")
            carb_amount = sfloat_at(data, offset + 1)
            offset += 3
        if flags & _MEAL:
            meal = _enum_code(Meal, data[offset], "meal")
            offset += 1
        if flags & _TESTER_HEALTH:
            tester = _enum_code(Tester, data[offset] & 0x0F, "tester")
            health = _enum_code(Health, data[offset] >> 4, "health")
            offset += 1
        if flags & _EXERCISE:
            duration = u16(data, offset)
            intensity = data[offset + 2]
            if intensity > 100:
                raise FieldError("exercise intensity is above 100 %")
            offset += 3
        if flags & _MEDICATION:
            medication = _enum_code(Medication, data[offset], "medication id")
            medication_amount = sfloat_at(data, offset + 1)
            offset += 3
        if flags & _HBA1C:
            hba1c = sfloat_at(data, offset)
    except FieldError as exc:
        raise GlucoseParseError(GLUCOSE_MEASUREMENT_CONTEXT, exc.reason) from None
    return GlucoseContext(
        sequence=u16(data, 1),
        medication_unit=(
            MedicationUnit.LITRE if flags & _MEDICATION_LITRE else MedicationUnit.KILOGRAM
        ),
        extended_flags=extended,
        carbohydrate=carb,
        carbohydrate_amount=carb_amount,
        meal=meal,
        tester=tester,
        health=health,
        exercise_duration=duration,
        exercise_intensity=intensity,
        medication=medication,
        medication_amount=medication_amount,
        hba1c=hba1c,
    )


def _pair(a: object, b: object, what: str) -> bool:
    """Whether a pair of fields that share one flag bit is present; both or neither."""
    if (a is None) != (b is None):
        raise ValueError(f"{what} travel together")
    return a is not None


def encode_glucose_context(c: GlucoseContext) -> bytes:
    """The notification a meter would send for ``c``."""
    _pair(c.carbohydrate, c.carbohydrate_amount, "carbohydrate id and amount")
    _pair(c.tester, c.health, "tester and health")
    _pair(c.exercise_duration, c.exercise_intensity, "exercise duration and intensity")
    _pair(c.medication, c.medication_amount, "medication id and amount")
    flags = _MEDICATION_LITRE if c.medication_unit is MedicationUnit.LITRE else 0
    tail = b""
    if c.extended_flags is not None:
        if c.extended_flags:
            raise ValueError("every extended flag is reserved")
        flags |= _EXTENDED
        tail += b"\x00"
    if c.carbohydrate is not None and c.carbohydrate_amount is not None:
        flags |= _CARBOHYDRATE
        tail += bytes((int(c.carbohydrate),)) + pack_sfloat(c.carbohydrate_amount)
    if c.meal is not None:
        flags |= _MEAL
        tail += bytes((int(c.meal),))
    if c.tester is not None and c.health is not None:
        flags |= _TESTER_HEALTH
        tail += bytes((int(c.health) << 4 | int(c.tester),))
    if c.exercise_duration is not None and c.exercise_intensity is not None:
        if c.exercise_intensity > 100:
            raise ValueError("exercise intensity above 100 %")
        flags |= _EXERCISE
        tail += pack_u16(c.exercise_duration) + pack_u8(c.exercise_intensity)
    if c.medication is not None and c.medication_amount is not None:
        flags |= _MEDICATION
        tail += bytes((int(c.medication),)) + pack_sfloat(c.medication_amount)
    if c.hba1c is not None:
        flags |= _HBA1C
        tail += pack_sfloat(c.hba1c)
    return bytes((flags,)) + pack_u16(c.sequence) + tail
