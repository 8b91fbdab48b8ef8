"""From a decoded measurement to the ``data`` of the events the gateway sends (pure).

Each function returns :class:`MeasurementDraft` values: the event type, its data, and
the device time the measurement was taken. The driver adds what only it knows (device
identity, the time received, the device clock's offset) and hands them to the outbox.

Data carries no floats: every number is ``{"m": mantissa, "e": exponent, "unit": UCUM}``
as the device sent it (value = m × 10^e), or ``{"absent": reason, "unit": UCUM}`` with the
FHIR data-absent-reason code when the device sent a special value. ``measured_at`` is
the device's own wall-clock time, naive ISO 8601 (``2025-03-14T08:30:00``), present only
when the device gave a known time. ``quality`` is always there: a sorted list of
:class:`~drivers.ble.quality.QualityFlag` values, empty when nothing was flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from drivers.ble.blood_pressure import UNKNOWN_USER, BloodPressureMeasurement
from drivers.ble.date_time import DeviceTime
from drivers.ble.glucose import GlucoseContext, GlucoseMeasurement, MedicationUnit
from drivers.ble.ieee11073 import Numeric, Value
from drivers.ble.pulse_oximeter import PlxContinuous, PlxSpotCheck
from drivers.ble.quality import QualityFlag, sorted_flags
from drivers.ble.temperature import TemperatureMeasurement
from drivers.ble.weight import WeightMeasurement, WeightScaleFeature

BLOOD_PRESSURE = "measurement.blood_pressure"
PULSE = "measurement.pulse"
SPO2 = "measurement.spo2"
BODY_WEIGHT = "measurement.body_weight"
GLUCOSE = "measurement.glucose"
BODY_TEMPERATURE = "measurement.body_temperature"

Quantity = dict[str, int | str]
"""``{"m", "e", "unit"}`` or ``{"absent", "unit"}``."""

DataValue = int | str | list[str] | Quantity

Measurement = (
    BloodPressureMeasurement
    | TemperatureMeasurement
    | WeightMeasurement
    | GlucoseMeasurement
    | PlxSpotCheck
    | PlxContinuous
)


@dataclass(frozen=True, slots=True)
class MeasurementDraft:
    """One event to raise, before the driver adds device, times and identifiers."""

    type: str
    data: dict[str, DataValue]
    measured_at: datetime | None
    """Naive device wall-clock time; None when the device gave none (or an unknown one)."""


def quantity(value: Value, unit: str) -> Quantity:
    """A number as event data: mantissa, exponent and UCUM unit, or why there is none."""
    if isinstance(value, Numeric):
        return {"m": value.mantissa, "e": value.exponent, "unit": unit}
    return {"absent": value.data_absent_reason, "unit": unit}


def _code(member: Enum) -> str:
    return member.name.lower()


def _common(
    data: dict[str, DataValue], measured_at: datetime | None, quality: frozenset[QualityFlag]
) -> dict[str, DataValue]:
    if measured_at is not None:
        data["measured_at"] = measured_at.isoformat()
    data["quality"] = sorted_flags(quality)
    return data


def _time(timestamp: DeviceTime | None) -> datetime | None:
    return None if timestamp is None else timestamp.as_datetime


def blood_pressure_drafts(m: BloodPressureMeasurement) -> list[MeasurementDraft]:
    """A blood pressure event, and a pulse event when the cuff measured the pulse.

    An Intermediate Cuff Pressure frame is progress while the cuff inflates: no event.
    """
    if m.intermediate:
        return []
    at, quality, unit = _time(m.timestamp), m.quality, m.unit.value
    user: dict[str, DataValue] = {}
    if m.user_id is not None and m.user_id != UNKNOWN_USER:
        user["user"] = m.user_id
    pressure: dict[str, DataValue] = {
        "systolic": quantity(m.systolic, unit),
        "diastolic": quantity(m.diastolic, unit),
        "mean": quantity(m.mean_arterial, unit),
        **user,
    }
    drafts = [MeasurementDraft(BLOOD_PRESSURE, _common(pressure, at, quality), at)]
    if m.pulse_rate is not None:
        pulse: dict[str, DataValue] = {
            "rate": quantity(m.pulse_rate, "/min"),
            "source": "blood_pressure",
            **user,
        }
        drafts.append(MeasurementDraft(PULSE, _common(pulse, at, quality), at))
    return drafts


def temperature_drafts(m: TemperatureMeasurement) -> list[MeasurementDraft]:
    at = _time(m.timestamp)
    data: dict[str, DataValue] = {"temperature": quantity(m.temperature, m.unit.value)}
    if m.type is not None:
        data["site"] = _code(m.type)
    return [MeasurementDraft(BODY_TEMPERATURE, _common(data, at, frozenset()), at)]


def weight_drafts(
    m: WeightMeasurement, feature: WeightScaleFeature | None = None
) -> list[MeasurementDraft]:
    """Weight (with BMI and height when sent), rounded to the scale's resolution if known."""
    at = _time(m.timestamp)
    weight = m.weight if feature is None else m.weight_at(feature.weight_resolution)
    data: dict[str, DataValue] = {"weight": quantity(weight, m.mass_unit.value)}
    bmi = m.bmi
    height = m.height if feature is None else m.height_at(feature.height_resolution)
    if bmi is not None and height is not None:
        data["bmi"] = quantity(bmi, "kg/m2")
        data["height"] = quantity(height, m.length_unit.value)
    if m.user_id is not None and m.user_id != UNKNOWN_USER:
        data["user"] = m.user_id
    return [MeasurementDraft(BODY_WEIGHT, _common(data, at, frozenset()), at)]


def glucose_drafts(
    m: GlucoseMeasurement, context: GlucoseContext | None = None
) -> list[MeasurementDraft]:
    """A glucose event in mg/dL or mmol/L, with what the person noted in the context.

    A record without a concentration gives no event. ``sequence`` is the meter's record
    number, which the driver uses to recognise a record sent again after a reconnect.
    """
    concentration = m.display()
    if concentration is None:
        return []
    if context is not None and context.sequence != m.sequence:
        raise ValueError("the context belongs to another record")
    data: dict[str, DataValue] = {
        "concentration": quantity(concentration, m.unit.display_unit),
        "sequence": m.sequence,
    }
    if m.sample_type is not None:
        data["sample_type"] = _code(m.sample_type)
    if m.sample_location is not None:
        data["sample_location"] = _code(m.sample_location)
    if context is not None:
        data.update(_context_data(context))
    at = m.measured_at
    return [MeasurementDraft(GLUCOSE, _common(data, at, m.quality), at)]


def _context_data(c: GlucoseContext) -> dict[str, DataValue]:
    """Context amounts in the units people use: grams, milligrams, millilitres."""
    data: dict[str, DataValue] = {}
    if c.meal is not None:
        data["meal"] = _code(c.meal)
    if c.carbohydrate is not None and c.carbohydrate_amount is not None:
        data["carbohydrate"] = _code(c.carbohydrate)
        data["carbohydrate_amount"] = quantity(_shift(c.carbohydrate_amount, 3), "g")
    if c.tester is not None and c.health is not None:
        data["tester"] = _code(c.tester)
        data["health"] = _code(c.health)
    if c.exercise_duration is not None and c.exercise_intensity is not None:
        data["exercise_duration"] = quantity(Numeric(c.exercise_duration, 0), "s")
        data["exercise_intensity"] = quantity(Numeric(c.exercise_intensity, 0), "%")
    if c.medication is not None and c.medication_amount is not None:
        litre = c.medication_unit is MedicationUnit.LITRE
        amount = _shift(c.medication_amount, 3 if litre else 6)
        data["medication"] = _code(c.medication)
        data["medication_amount"] = quantity(amount, "mL" if litre else "mg")
    if c.hba1c is not None:
        data["hba1c"] = quantity(c.hba1c, "%")
    return data


def _shift(value: Value, powers: int) -> Value:
    if isinstance(value, Numeric):
        return Numeric(value.mantissa, value.exponent + powers)
    return value


def spot_check_drafts(m: PlxSpotCheck) -> list[MeasurementDraft]:
    """An SpO2 event and a pulse event; without a timestamp the driver stamps receipt."""
    at, quality = _time(m.timestamp), m.quality
    spo2: dict[str, DataValue] = {"spo2": quantity(m.spo2, "%"), "mode": "spot_check"}
    if m.pulse_amplitude_index is not None:
        spo2["pai"] = quantity(m.pulse_amplitude_index, "%")
    pulse: dict[str, DataValue] = {
        "rate": quantity(m.pulse_rate, "/min"),
        "source": "pulse_oximeter",
        "mode": "spot_check",
    }
    return [
        MeasurementDraft(SPO2, _common(spo2, at, quality), at),
        MeasurementDraft(PULSE, _common(pulse, at, quality), at),
    ]


def continuous_drafts(m: PlxContinuous) -> list[MeasurementDraft]:
    """SpO2 and pulse from one continuous reading (the driver down-samples before this)."""
    quality = m.quality
    spo2: dict[str, DataValue] = {"spo2": quantity(m.normal.spo2, "%"), "mode": "continuous"}
    pulse: dict[str, DataValue] = {
        "rate": quantity(m.normal.pulse_rate, "/min"),
        "source": "pulse_oximeter",
        "mode": "continuous",
    }
    for name, pair in (("fast", m.fast), ("slow", m.slow)):
        if pair is not None:
            spo2[name] = quantity(pair.spo2, "%")
            pulse[name] = quantity(pair.pulse_rate, "/min")
    if m.pulse_amplitude_index is not None:
        spo2["pai"] = quantity(m.pulse_amplitude_index, "%")
    return [
        MeasurementDraft(SPO2, _common(spo2, None, quality), None),
        MeasurementDraft(PULSE, _common(pulse, None, quality), None),
    ]


def measurement_drafts(
    m: Measurement,
    *,
    weight_feature: WeightScaleFeature | None = None,
    glucose_context: GlucoseContext | None = None,
) -> list[MeasurementDraft]:
    """The drafts for any decoded measurement (the per-type functions, dispatched)."""
    if isinstance(m, BloodPressureMeasurement):
        return blood_pressure_drafts(m)
    if isinstance(m, TemperatureMeasurement):
        return temperature_drafts(m)
    if isinstance(m, WeightMeasurement):
        return weight_drafts(m, weight_feature)
    if isinstance(m, GlucoseMeasurement):
        return glucose_drafts(m, glucose_context)
    if isinstance(m, PlxSpotCheck):
        return spot_check_drafts(m)
    return continuous_drafts(m)
