"""From decoded measurements to event data: exact data for the worked examples, and for
any measurement a device could send, data a signed event accepts (no floats, exact
numbers, UCUM units)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.blood_pressure import decode_blood_pressure, decode_intermediate_cuff_pressure
from drivers.ble.events import (
    BLOOD_PRESSURE,
    BODY_TEMPERATURE,
    BODY_WEIGHT,
    GLUCOSE,
    PULSE,
    SPO2,
    Measurement,
    MeasurementDraft,
    glucose_drafts,
    measurement_drafts,
    weight_drafts,
)
from drivers.ble.glucose import GlucoseMeasurement, decode_glucose, decode_glucose_context
from drivers.ble.pulse_oximeter import decode_plx_continuous, decode_plx_spot_check
from drivers.ble.quality import QualityFlag
from drivers.ble.temperature import decode_temperature
from drivers.ble.weight import (
    HeightResolution,
    WeightMeasurement,
    WeightResolution,
    WeightScaleFeature,
    decode_weight,
)
from tests.drivers.ble.codecs import frame
from tests.drivers.ble.strategies import (
    blood_pressures,
    continuous,
    glucose_contexts,
    glucoses,
    spot_checks,
    temperatures,
    weight_features,
    weights,
)
from trygg.wire.canonical import check_signable
from trygg.wire.clock import format_ts
from trygg.wire.envelope import DEFAULT_PRIORITY, Event
from trygg.wire.ids import uuid7

MEASURED = datetime(2025, 3, 14, 8, 30)
TIME = "2025-03-14T08:30:00"


def test_blood_pressure_example_gives_a_pressure_and_a_pulse_event() -> None:
    m = decode_blood_pressure(frame("06 7800 5000 5D00 E9 07 03 0E 08 1E 00 4800"))
    assert measurement_drafts(m) == [
        MeasurementDraft(
            BLOOD_PRESSURE,
            {
                "systolic": {"m": 120, "e": 0, "unit": "mm[Hg]"},
                "diastolic": {"m": 80, "e": 0, "unit": "mm[Hg]"},
                "mean": {"m": 93, "e": 0, "unit": "mm[Hg]"},
                "measured_at": TIME,
                "quality": [],
            },
            MEASURED,
        ),
        MeasurementDraft(
            PULSE,
            {
                "rate": {"m": 72, "e": 0, "unit": "/min"},
                "source": "blood_pressure",
                "measured_at": TIME,
                "quality": [],
            },
            MEASURED,
        ),
    ]


def test_blood_pressure_status_user_and_kpa_travel_in_both_events() -> None:
    m = decode_blood_pressure(frame("1D A0F0 6AF0 7CF0 4800 02 0D00"))
    pressure, pulse = measurement_drafts(m)
    expected_quality = ["body_movement", "irregular_pulse", "pulse_above_range"]
    assert pressure.data["systolic"] == {"m": 160, "e": -1, "unit": "kPa"}
    assert pressure.data["user"] == pulse.data["user"] == 2
    assert pressure.data["quality"] == pulse.data["quality"] == expected_quality
    assert "measured_at" not in pressure.data and pressure.measured_at is None


def test_a_failed_cuff_measurement_is_absent_not_a_number() -> None:
    m = decode_blood_pressure(frame("08 FF07 FF07 FF07 FF"))
    (pressure,) = measurement_drafts(m)
    assert pressure.data["systolic"] == {"absent": "not-a-number", "unit": "mm[Hg]"}
    assert "user" not in pressure.data  # 0xFF: the monitor did not know who it was


def test_intermediate_cuff_pressure_raises_no_event() -> None:
    assert measurement_drafts(decode_intermediate_cuff_pressure(frame("00 9600 FF07 FF07"))) == []


def test_temperature_example() -> None:
    m = decode_temperature(frame("06 6C0100FF E907030E081E00 02"))
    assert measurement_drafts(m) == [
        MeasurementDraft(
            BODY_TEMPERATURE,
            {
                "temperature": {"m": 364, "e": -1, "unit": "Cel"},
                "site": "body",
                "measured_at": TIME,
                "quality": [],
            },
            MEASURED,
        )
    ]
    fahrenheit = measurement_drafts(decode_temperature(frame("01 CF0300FF")))[0]
    assert fahrenheit.data["temperature"] == {"m": 975, "e": -1, "unit": "[degF]"}


FEATURE_0_1_KG = WeightScaleFeature(
    True, False, True, WeightResolution.KG_0_1_OR_LB_0_2, HeightResolution.M_0_01_OR_IN_1
)


def test_weight_example_at_field_and_at_scale_resolution() -> None:
    m = decode_weight(frame("00 A438"))
    (plain,) = weight_drafts(m)
    assert plain == MeasurementDraft(
        BODY_WEIGHT, {"weight": {"m": 72500, "e": -3, "unit": "kg"}, "quality": []}, None
    )
    (rounded,) = weight_drafts(m, FEATURE_0_1_KG)
    assert rounded.data["weight"] == {"m": 725, "e": -1, "unit": "kg"}


@pytest.mark.parametrize(
    ("raw", "resolution", "expected"),
    [
        (14501, WeightResolution.KG_0_1_OR_LB_0_2, "72.5"),  # 72.505 kg on a 0.1 kg scale
        (14501, WeightResolution.KG_0_005_OR_LB_0_01, "72.505"),
        (14501, WeightResolution.NOT_SPECIFIED, "72.505"),
        (14550, WeightResolution.KG_0_5_OR_LB_1, "73.0"),  # 72.75: half to even, 146 × 0.5
        (14520, WeightResolution.KG_0_2_OR_LB_0_5, "72.6"),
        (14502, WeightResolution.KG_0_02_OR_LB_0_05, "72.52"),
    ],
)
def test_weight_rounds_to_the_scale_resolution(
    raw: int, resolution: WeightResolution, expected: str
) -> None:
    m = WeightMeasurement(imperial=False, weight_raw=raw)
    assert str(m.weight_at(resolution)) == expected


def test_imperial_weight_bmi_height_and_unsuccessful() -> None:
    m = decode_weight(frame("0D 803E 02 F500 B202"))
    (draft,) = weight_drafts(m, FEATURE_0_1_KG)
    assert draft.data == {
        "weight": {"m": 1600, "e": -1, "unit": "[lb_av]"},  # 160.00 lb on a 0.2 lb scale
        "bmi": {"m": 245, "e": -1, "unit": "kg/m2"},
        "height": {"m": 69, "e": 0, "unit": "[in_i]"},  # 69.0 in on a 1 in scale
        "user": 2,
        "quality": [],
    }
    (failed,) = weight_drafts(decode_weight(frame("00 FFFF")), FEATURE_0_1_KG)
    assert failed.data["weight"] == {"absent": "error", "unit": "kg"}


def test_glucose_examples_in_mg_dl_and_mmol_l() -> None:
    mg = decode_glucose(frame("02 0100 E907030E081E00 5FB0 11"))
    assert glucose_drafts(mg) == [
        MeasurementDraft(
            GLUCOSE,
            {
                "concentration": {"m": 95, "e": 0, "unit": "mg/dL"},
                "sequence": 1,
                "sample_type": "capillary_whole_blood",
                "sample_location": "finger",
                "measured_at": TIME,
                "quality": [],
            },
            MEASURED,
        )
    ]
    mmol = decode_glucose(frame("06 0100 E907030E081E00 35C0 11"))
    (draft,) = glucose_drafts(mmol)
    assert draft.data["concentration"] == {"m": 53, "e": -1, "unit": "mmol/L"}


def test_glucose_with_its_context() -> None:
    m = decode_glucose(frame("12 0700 E907030E081E00 5FB0 11"))
    context = decode_glucose_context(frame("7F 0700 0132D0 01 51 100E32 010AA0 3EF0"))
    (draft,) = glucose_drafts(m, context)
    assert m.context_follows
    assert {key: draft.data[key] for key in draft.data if key not in ("concentration",)} == {
        "sequence": 7,
        "sample_type": "capillary_whole_blood",
        "sample_location": "finger",
        "meal": "preprandial",
        "carbohydrate": "breakfast",
        "carbohydrate_amount": {"m": 50, "e": 0, "unit": "g"},
        "tester": "self",
        "health": "no_issues",
        "exercise_duration": {"m": 3600, "e": 0, "unit": "s"},
        "exercise_intensity": {"m": 50, "e": 0, "unit": "%"},
        "medication": "rapid_acting_insulin",
        "medication_amount": {"m": 10, "e": -3, "unit": "mL"},
        "hba1c": {"m": 62, "e": -1, "unit": "%"},
        "measured_at": TIME,
        "quality": [],
    }
    other = decode_glucose_context(frame("02 0800 01"))
    with pytest.raises(ValueError, match="another record"):
        glucose_drafts(m, other)


def test_glucose_record_without_concentration_and_control_solution() -> None:
    assert glucose_drafts(decode_glucose(frame("00 0100 E907030E081E00"))) == []
    (control,) = glucose_drafts(decode_glucose(frame("02 0300 E907030E081E00 5FB0 4A")))
    assert control.data["quality"] == [QualityFlag.CONTROL_SOLUTION.value]


def test_glucose_time_offset_past_year_9999_is_no_time_not_a_crash() -> None:
    m = decode_glucose(frame("03 0100 0F27 0C 1F 17 3B 00 FF7F 5FB0 11"))
    assert m.measured_at is None
    (draft,) = glucose_drafts(m)
    assert draft.measured_at is None and "measured_at" not in draft.data


def test_spot_check_example_has_no_device_time() -> None:
    spo2, pulse = measurement_drafts(decode_plx_spot_check(frame("00 6100 4000")))
    assert spo2 == MeasurementDraft(
        SPO2, {"spo2": {"m": 97, "e": 0, "unit": "%"}, "mode": "spot_check", "quality": []}, None
    )
    assert pulse == MeasurementDraft(
        PULSE,
        {
            "rate": {"m": 64, "e": 0, "unit": "/min"},
            "source": "pulse_oximeter",
            "mode": "spot_check",
            "quality": [],
        },
        None,
    )


def test_spot_check_with_unset_clock_and_demo_data() -> None:
    m = decode_plx_spot_check(frame("1B 6100 4000 E907030E081E00 0044 2DF0"))
    spo2, _ = measurement_drafts(m)
    assert spo2.data["pai"] == {"m": 45, "e": -1, "unit": "%"}
    assert spo2.data["quality"] == ["clock_fault", "demo_data", "questionable"]
    assert spo2.measured_at == MEASURED  # kept as sent; the flag says not to trust it


def test_continuous_carries_fast_and_slow() -> None:
    m = decode_plx_continuous(frame("0B 6200 4800 6100 4A00 6300 4600 200000"))
    spo2, pulse = measurement_drafts(m)
    assert spo2.data == {
        "spo2": {"m": 98, "e": 0, "unit": "%"},
        "mode": "continuous",
        "fast": {"m": 97, "e": 0, "unit": "%"},
        "slow": {"m": 99, "e": 0, "unit": "%"},
        "quality": ["low_perfusion"],
    }
    assert pulse.data["fast"] == {"m": 74, "e": 0, "unit": "/min"}
    assert pulse.data["slow"] == {"m": 70, "e": 0, "unit": "/min"}


def _as_event(draft: MeasurementDraft) -> Event:
    """The draft as the outbox will send it: validated like any event on the wire."""
    now = format_ts(datetime(2026, 1, 1, tzinfo=UTC))
    return Event.model_validate(
        {
            "event_id": str(uuid7()),
            "gateway_id": "gw-test",
            "boot_id": "boot-1",
            "seq": 1,
            "occurred_at": now,
            "recorded_at": now,
            "class": "measurement",
            "type": draft.type,
            "priority": DEFAULT_PRIORITY["measurement"],
            "data": draft.data,
        }
    )


def _numbers(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in data.values() if isinstance(v, dict)]


MEASUREMENTS = st.one_of(
    blood_pressures(), temperatures(), weights(), glucoses(), spot_checks(), continuous()
)


@given(m=MEASUREMENTS, feature=st.none() | weight_features(), data=st.data())
def test_any_measurement_gives_data_a_signed_event_accepts(
    m: Measurement, feature: WeightScaleFeature | None, data: st.DataObject
) -> None:
    context = None
    if isinstance(m, GlucoseMeasurement):
        context = data.draw(st.none() | glucose_contexts(sequence=m.sequence), label="context")
    for draft in measurement_drafts(m, weight_feature=feature, glucose_context=context):
        check_signable(draft.data)
        event = _as_event(draft)
        assert event.canonical()
        assert isinstance(draft.data["quality"], list)
        assert set(draft.data["quality"]) <= {flag.value for flag in QualityFlag}
        for number in _numbers(draft.data):
            assert set(number) in ({"m", "e", "unit"}, {"absent", "unit"})
            if "m" in number:
                Decimal(number["m"]).scaleb(number["e"])
        if draft.measured_at is not None:
            assert draft.data["measured_at"] == draft.measured_at.isoformat()
        else:
            assert "measured_at" not in draft.data
