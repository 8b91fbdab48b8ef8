"""Hypothesis strategies for every decoded type: any value a device could legally send."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from hypothesis import strategies as st

from drivers.ble.battery import BatteryLevel
from drivers.ble.blood_pressure import BloodPressureMeasurement, BloodPressureStatus, PressureUnit
from drivers.ble.date_time import AdjustReason, CurrentTime, DayOfWeek, DeviceTime
from drivers.ble.glucose import (
    Carbohydrate,
    GlucoseContext,
    GlucoseMeasurement,
    GlucoseStatus,
    GlucoseUnit,
    Health,
    Meal,
    Medication,
    MedicationUnit,
    SampleLocation,
    SampleType,
    Tester,
)
from drivers.ble.ieee11073 import (
    NAN,
    NEGATIVE_INFINITY,
    NRES,
    POSITIVE_INFINITY,
    RESERVED,
    Numeric,
    Value,
)
from drivers.ble.pulse_oximeter import (
    PlxContinuous,
    PlxDeviceStatus,
    PlxFeatures,
    PlxMeasurementStatus,
    PlxSpotCheck,
    PlxSupportedFeatures,
    SpO2PulseRate,
)
from drivers.ble.racp import NumberOfRecords, Opcode, RacpResponse, ResponseCode
from drivers.ble.temperature import TemperatureMeasurement, TemperatureType, TemperatureUnit
from drivers.ble.weight import (
    HeightResolution,
    WeightMeasurement,
    WeightResolution,
    WeightScaleFeature,
)

SPECIALS = st.sampled_from([NAN, NRES, POSITIVE_INFINITY, NEGATIVE_INFINITY, RESERVED])
_SFLOAT_SPECIAL_MANTISSAS = {2047, 2046, -2048, -2047, -2046}
_FLOAT_SPECIAL_MANTISSAS = {0x7FFFFF, 0x7FFFFE, -0x800000, -0x7FFFFF, -0x7FFFFE}


def sfloats() -> st.SearchStrategy[Value]:
    numbers = st.builds(Numeric, st.integers(-2048, 2047), st.integers(-8, 7)).filter(
        lambda n: n.exponent != 0 or n.mantissa not in _SFLOAT_SPECIAL_MANTISSAS
    )
    return st.one_of(numbers, SPECIALS)


def floats32() -> st.SearchStrategy[Value]:
    numbers = st.builds(Numeric, st.integers(-0x800000, 0x7FFFFF), st.integers(-128, 127)).filter(
        lambda n: n.exponent != 0 or n.mantissa not in _FLOAT_SPECIAL_MANTISSAS
    )
    return st.one_of(numbers, SPECIALS)


def device_times() -> st.SearchStrategy[DeviceTime]:
    known = st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
        DeviceTime.of
    )
    unknown = st.builds(
        DeviceTime,
        st.just(0) | st.integers(1582, 9999),
        st.integers(0, 12),
        st.integers(0, 28),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
    ).filter(lambda t: not t.known)
    return known | unknown


T = TypeVar("T")


def _maybe(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | strategy


def u8() -> st.SearchStrategy[int]:
    return st.integers(0, 0xFF)


def u16() -> st.SearchStrategy[int]:
    return st.integers(0, 0xFFFF)


def blood_pressures(
    intermediate: bool | None = None,
) -> st.SearchStrategy[BloodPressureMeasurement]:
    return st.builds(
        BloodPressureMeasurement,
        unit=st.sampled_from(PressureUnit),
        systolic=sfloats(),
        diastolic=sfloats(),
        mean_arterial=sfloats(),
        timestamp=_maybe(device_times()),
        pulse_rate=_maybe(sfloats()),
        user_id=_maybe(u8()),
        status=_maybe(u16().map(BloodPressureStatus)),
        intermediate=st.booleans() if intermediate is None else st.just(intermediate),
    )


def temperatures() -> st.SearchStrategy[TemperatureMeasurement]:
    return st.builds(
        TemperatureMeasurement,
        unit=st.sampled_from(TemperatureUnit),
        temperature=floats32(),
        timestamp=_maybe(device_times()),
        type=_maybe(st.sampled_from(TemperatureType)),
    )


@st.composite
def weights(draw: st.DrawFn) -> WeightMeasurement:
    bmi_height = draw(_maybe(st.tuples(u16(), u16())))
    return WeightMeasurement(
        imperial=draw(st.booleans()),
        weight_raw=draw(u16()),
        timestamp=draw(_maybe(device_times())),
        user_id=draw(_maybe(u8())),
        bmi_raw=None if bmi_height is None else bmi_height[0],
        height_raw=None if bmi_height is None else bmi_height[1],
    )


def weight_features() -> st.SearchStrategy[WeightScaleFeature]:
    return st.builds(
        WeightScaleFeature,
        st.booleans(),
        st.booleans(),
        st.booleans(),
        st.sampled_from(WeightResolution),
        st.sampled_from(HeightResolution),
    )


@st.composite
def glucoses(draw: st.DrawFn) -> GlucoseMeasurement:
    sample = draw(
        _maybe(st.tuples(sfloats(), st.sampled_from(SampleType), st.sampled_from(SampleLocation)))
    )
    return GlucoseMeasurement(
        sequence=draw(u16()),
        base_time=draw(device_times()),
        unit=draw(st.sampled_from(GlucoseUnit)),
        time_offset=draw(_maybe(st.integers(-0x8000, 0x7FFF))),
        concentration=None if sample is None else sample[0],
        sample_type=None if sample is None else sample[1],
        sample_location=None if sample is None else sample[2],
        status=draw(_maybe(u16().map(GlucoseStatus))),
        context_follows=draw(st.booleans()),
    )


@st.composite
def glucose_contexts(draw: st.DrawFn, sequence: int | None = None) -> GlucoseContext:
    carb = draw(_maybe(st.tuples(st.sampled_from(Carbohydrate), sfloats())))
    people = draw(_maybe(st.tuples(st.sampled_from(Tester), st.sampled_from(Health))))
    exercise = draw(_maybe(st.tuples(u16(), st.integers(0, 100))))
    medication = draw(_maybe(st.tuples(st.sampled_from(Medication), sfloats())))
    return GlucoseContext(
        sequence=draw(u16()) if sequence is None else sequence,
        medication_unit=draw(st.sampled_from(MedicationUnit)),
        extended_flags=draw(st.sampled_from([None, 0])),
        carbohydrate=None if carb is None else carb[0],
        carbohydrate_amount=None if carb is None else carb[1],
        meal=draw(_maybe(st.sampled_from(Meal))),
        tester=None if people is None else people[0],
        health=None if people is None else people[1],
        exercise_duration=None if exercise is None else exercise[0],
        exercise_intensity=None if exercise is None else exercise[1],
        medication=None if medication is None else medication[0],
        medication_amount=None if medication is None else medication[1],
        hba1c=draw(_maybe(sfloats())),
    )


def _pairs() -> st.SearchStrategy[SpO2PulseRate]:
    return st.builds(SpO2PulseRate, sfloats(), sfloats())


def _measurement_status() -> st.SearchStrategy[PlxMeasurementStatus]:
    return u16().map(PlxMeasurementStatus)


def _device_status() -> st.SearchStrategy[PlxDeviceStatus]:
    return st.integers(0, 0xFFFFFF).map(PlxDeviceStatus)


def spot_checks() -> st.SearchStrategy[PlxSpotCheck]:
    return st.builds(
        PlxSpotCheck,
        spo2=sfloats(),
        pulse_rate=sfloats(),
        timestamp=_maybe(device_times()),
        measurement_status=_maybe(_measurement_status()),
        device_status=_maybe(_device_status()),
        pulse_amplitude_index=_maybe(sfloats()),
        clock_not_set=st.booleans(),
    )


def continuous() -> st.SearchStrategy[PlxContinuous]:
    return st.builds(
        PlxContinuous,
        normal=_pairs(),
        fast=_maybe(_pairs()),
        slow=_maybe(_pairs()),
        measurement_status=_maybe(_measurement_status()),
        device_status=_maybe(_device_status()),
        pulse_amplitude_index=_maybe(sfloats()),
    )


@st.composite
def plx_features(draw: st.DrawFn) -> PlxFeatures:
    supported = PlxSupportedFeatures(draw(u8()))
    measurement = (
        draw(_measurement_status()) if supported & PlxSupportedFeatures.MEASUREMENT_STATUS else None
    )
    device = (
        draw(_device_status()) if supported & PlxSupportedFeatures.DEVICE_SENSOR_STATUS else None
    )
    return PlxFeatures(supported, measurement, device)


def current_times() -> st.SearchStrategy[CurrentTime]:
    return st.builds(
        CurrentTime,
        device_times(),
        st.sampled_from(DayOfWeek),
        u8(),
        st.integers(0, 15).map(AdjustReason),
    )


def racp_responses() -> st.SearchStrategy[NumberOfRecords | RacpResponse]:
    requests = [
        Opcode.REPORT_STORED_RECORDS,
        Opcode.DELETE_STORED_RECORDS,
        Opcode.ABORT_OPERATION,
        Opcode.REPORT_NUMBER_OF_RECORDS,
    ]
    return st.builds(NumberOfRecords, u16()) | st.builds(
        RacpResponse, st.sampled_from(requests), st.sampled_from(ResponseCode)
    )


def battery_levels() -> st.SearchStrategy[BatteryLevel]:
    return st.builds(BatteryLevel, st.integers(0, 100))


VALUES: dict[int, st.SearchStrategy[object]] = {
    0x2A35: blood_pressures(intermediate=False),
    0x2A36: blood_pressures(intermediate=True),
    0x2A1C: temperatures(),
    0x2A1D: st.sampled_from(TemperatureType),
    0x2A9D: weights(),
    0x2A9E: weight_features(),
    0x2A18: glucoses(),
    0x2A34: glucose_contexts(),
    0x2A52: racp_responses(),
    0x2A5E: spot_checks(),
    0x2A5F: continuous(),
    0x2A60: plx_features(),
    0x2A08: device_times(),
    0x2A2B: current_times(),
    0x2A19: battery_levels(),
}
"""A strategy per characteristic UUID, for values its encoder and decoder must agree on."""
