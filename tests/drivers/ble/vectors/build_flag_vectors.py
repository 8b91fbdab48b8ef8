"""Write ``flag_combinations.json``: one frame for every flag combination of every layout.

One case a line. Run from the repository root:
``.venv/bin/python -m tests.drivers.ble.vectors.build_flag_vectors``.

The frames are put together here byte by byte from fixed field values, and the expected
summaries are written out by hand from those same values; nothing from ``drivers.ble``
is imported, so the vectors check the decoders rather than repeat them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("flag_combinations.json")

TIME = "E907030E081E00"
"""2025-03-14 08:30:00."""
TIME_TEXT = "2025-03-14T08:30:00"

Case = dict[str, Any]


def _case(name: str, uuid: int, frame: str, fields: dict[str, Any]) -> Case:
    return {"name": name, "characteristic": f"0x{uuid:04X}", "hex": frame, "fields": fields}


def _bits(flags: int, names: dict[int, str]) -> str:
    on = [name for bit, name in names.items() if flags & bit]
    return "+".join(on) or "none"


def blood_pressure() -> list[Case]:
    names = {1: "kPa", 2: "time", 4: "pulse", 8: "user", 16: "status"}
    cases = []
    for uuid, intermediate in ((0x2A35, False), (0x2A36, True)):
        for flags in range(32):
            kpa = bool(flags & 1)
            sys_, dia, mean = ("A0F0", "6AF0", "7CF0") if kpa else ("7800", "5000", "5D00")
            frame = f"{flags:02X}{sys_}{dia}{mean}"
            frame += TIME if flags & 2 else ""
            frame += "4800" if flags & 4 else ""
            frame += "01" if flags & 8 else ""
            # body movement, irregular pulse, pulse rate above its range (bits 3-4 = 01)
            frame += "0D00" if flags & 16 else ""
            status = flags & 16
            fields = {
                "unit": "KPA" if kpa else "MMHG",
                "systolic": "16.0" if kpa else "120",
                "diastolic": "10.6" if kpa else "80",
                "mean_arterial": "12.4" if kpa else "93",
                "timestamp": TIME_TEXT if flags & 2 else None,
                "pulse_rate": "72" if flags & 4 else None,
                "user_id": 1 if flags & 8 else None,
                "status": (
                    ["BODY_MOVEMENT", "IRREGULAR_PULSE", "PULSE_RATE_ABOVE_UPPER"]
                    if status
                    else None
                ),
                "intermediate": intermediate,
                "pulse_rate_range": "ABOVE_UPPER" if status else None,
                "quality": (
                    ["body_movement", "irregular_pulse", "pulse_above_range"] if status else []
                ),
            }
            label = f"flags 0x{flags:02X} ({_bits(flags, names)})"
            cases.append(_case(label, uuid, frame, fields))
    return cases


def temperature() -> list[Case]:
    names = {1: "F", 2: "time", 4: "type"}
    cases = []
    for flags in range(8):
        fahrenheit = bool(flags & 1)
        frame = f"{flags:02X}" + ("CF0300FF" if fahrenheit else "6C0100FF")
        frame += TIME if flags & 2 else ""
        frame += "02" if flags & 4 else ""
        fields = {
            "unit": "FAHRENHEIT" if fahrenheit else "CELSIUS",
            "temperature": "97.5" if fahrenheit else "36.4",
            "timestamp": TIME_TEXT if flags & 2 else None,
            "type": "BODY" if flags & 4 else None,
        }
        cases.append(_case(f"flags 0x{flags:02X} ({_bits(flags, names)})", 0x2A1C, frame, fields))
    return cases


def weight() -> list[Case]:
    names = {1: "imperial", 2: "time", 4: "user", 8: "bmi+height"}
    cases = []
    for flags in range(16):
        imperial = bool(flags & 1)
        frame = f"{flags:02X}" + ("803E" if imperial else "A438")
        frame += TIME if flags & 2 else ""
        frame += "02" if flags & 4 else ""
        bmi = flags & 8
        if bmi:
            frame += "F500" + ("B202" if imperial else "D606")
        fields = {
            "imperial": imperial,
            "weight_raw": 16000 if imperial else 14500,
            "timestamp": TIME_TEXT if flags & 2 else None,
            "user_id": 2 if flags & 4 else None,
            "bmi_raw": 245 if bmi else None,
            "height_raw": (690 if imperial else 1750) if bmi else None,
            "mass_unit": "POUND" if imperial else "KILOGRAM",
            "length_unit": "INCH" if imperial else "METRE",
            "weight": "160.00" if imperial else "72.500",
            "bmi": "24.5" if bmi else None,
            "height": ("69.0" if imperial else "1.750") if bmi else None,
        }
        cases.append(_case(f"flags 0x{flags:02X} ({_bits(flags, names)})", 0x2A9D, frame, fields))
    return cases


def glucose() -> list[Case]:
    names = {1: "offset", 2: "concentration", 4: "mol/L", 8: "status", 16: "context"}
    cases = []
    for flags in range(32):
        mol = bool(flags & 4)
        conc = flags & 2
        frame = f"{flags:02X}0100{TIME}"
        frame += "0F00" if flags & 1 else ""
        if conc:
            frame += ("35C0" if mol else "5FB0") + "11"
        # sensor malfunction + result higher than the device can process
        frame += "2200" if flags & 8 else ""
        quality = ["above_device_range", "sensor_fault"] if flags & 8 else []
        fields = {
            "sequence": 1,
            "base_time": TIME_TEXT,
            "unit": "MOL_PER_L" if mol else "KG_PER_L",
            "time_offset": 15 if flags & 1 else None,
            "concentration": ("0.0053" if mol else "0.00095") if conc else None,
            "sample_type": "CAPILLARY_WHOLE_BLOOD" if conc else None,
            "sample_location": "FINGER" if conc else None,
            "status": ["RESULT_TOO_HIGH", "SENSOR_MALFUNCTION"] if flags & 8 else None,
            "context_follows": bool(flags & 16),
            "measured_at": "2025-03-14T08:45:00" if flags & 1 else TIME_TEXT,
            "quality": quality,
        }
        cases.append(_case(f"flags 0x{flags:02X} ({_bits(flags, names)})", 0x2A18, frame, fields))
    return cases


def glucose_context() -> list[Case]:
    names = {
        1: "carbohydrate",
        2: "meal",
        4: "tester",
        8: "exercise",
        16: "medication",
        32: "litre",
        64: "hba1c",
        128: "extended",
    }
    cases = []
    for flags in range(256):
        frame = f"{flags:02X}0100"
        frame += "00" if flags & 128 else ""
        frame += "0132D0" if flags & 1 else ""
        frame += "01" if flags & 2 else ""
        frame += "51" if flags & 4 else ""
        frame += "100E32" if flags & 8 else ""
        frame += "010AA0" if flags & 16 else ""
        frame += "3EF0" if flags & 64 else ""
        fields = {
            "sequence": 1,
            "medication_unit": "LITRE" if flags & 32 else "KILOGRAM",
            "extended_flags": 0 if flags & 128 else None,
            "carbohydrate": "BREAKFAST" if flags & 1 else None,
            "carbohydrate_amount": "0.050" if flags & 1 else None,
            "meal": "PREPRANDIAL" if flags & 2 else None,
            "tester": "SELF" if flags & 4 else None,
            "health": "NO_ISSUES" if flags & 4 else None,
            "exercise_duration": 3600 if flags & 8 else None,
            "exercise_intensity": 50 if flags & 8 else None,
            "medication": "RAPID_ACTING_INSULIN" if flags & 16 else None,
            "medication_amount": "0.000010" if flags & 16 else None,
            "hba1c": "6.2" if flags & 64 else None,
        }
        cases.append(_case(f"flags 0x{flags:02X} ({_bits(flags, names)})", 0x2A34, frame, fields))
    return cases


MEASUREMENT_STATUS = ["DATA_FOR_DEMONSTRATION", "QUESTIONABLE_MEASUREMENT"]
DEVICE_STATUS = ["LOW_PERFUSION"]


def plx_spot_check() -> list[Case]:
    names = {1: "time", 2: "status", 4: "device status", 8: "PAI", 16: "clock not set"}
    cases = []
    for flags in range(32):
        frame = f"{flags:02X}61004000"
        frame += TIME if flags & 1 else ""
        frame += "0044" if flags & 2 else ""
        frame += "200000" if flags & 4 else ""
        frame += "2DF0" if flags & 8 else ""
        quality = []
        if flags & 2:
            quality += ["demo_data", "questionable"]
        if flags & 4:
            quality += ["low_perfusion"]
        if flags & 16 and flags & 1:
            quality += ["clock_fault"]
        fields = {
            "spo2": "97",
            "pulse_rate": "64",
            "timestamp": TIME_TEXT if flags & 1 else None,
            "measurement_status": MEASUREMENT_STATUS if flags & 2 else None,
            "device_status": DEVICE_STATUS if flags & 4 else None,
            "pulse_amplitude_index": "4.5" if flags & 8 else None,
            "clock_not_set": bool(flags & 16),
            "quality": sorted(quality),
        }
        cases.append(_case(f"flags 0x{flags:02X} ({_bits(flags, names)})", 0x2A5E, frame, fields))
    return cases


def plx_continuous() -> list[Case]:
    names = {1: "fast", 2: "slow", 4: "status", 8: "device status", 16: "PAI"}
    cases = []
    for flags in range(32):
        frame = f"{flags:02X}62004800"
        frame += "61004A00" if flags & 1 else ""
        frame += "63004600" if flags & 2 else ""
        frame += "0044" if flags & 4 else ""
        frame += "200000" if flags & 8 else ""
        frame += "2DF0" if flags & 16 else ""
        quality = (["demo_data", "questionable"] if flags & 4 else []) + (
            ["low_perfusion"] if flags & 8 else []
        )
        fields = {
            "normal": {"spo2": "98", "pulse_rate": "72"},
            "fast": {"spo2": "97", "pulse_rate": "74"} if flags & 1 else None,
            "slow": {"spo2": "99", "pulse_rate": "70"} if flags & 2 else None,
            "measurement_status": MEASUREMENT_STATUS if flags & 4 else None,
            "device_status": DEVICE_STATUS if flags & 8 else None,
            "pulse_amplitude_index": "4.5" if flags & 16 else None,
            "quality": sorted(quality),
        }
        cases.append(_case(f"flags 0x{flags:02X} ({_bits(flags, names)})", 0x2A5F, frame, fields))
    return cases


def plx_features() -> list[Case]:
    cases = []
    for flags in range(4):
        raw = flags | 0x0C  # plus spot-check storage and timestamp
        frame = f"{raw:02X}00"
        frame += "E0FF" if flags & 1 else ""
        frame += "FFFF00" if flags & 2 else ""
        supported = ["SPOT_CHECK_STORAGE", "SPOT_CHECK_TIMESTAMP"]
        supported += ["MEASUREMENT_STATUS"] if flags & 1 else []
        supported += ["DEVICE_SENSOR_STATUS"] if flags & 2 else []
        fields = {
            "supported": sorted(supported),
            "measurement_status_support": (
                sorted(
                    [
                        "CALIBRATION_ONGOING",
                        "DATA_FOR_DEMONSTRATION",
                        "DATA_FOR_TESTING",
                        "DATA_FROM_STORAGE",
                        "EARLY_ESTIMATED_DATA",
                        "FULLY_QUALIFIED_DATA",
                        "INVALID_MEASUREMENT",
                        "MEASUREMENT_ONGOING",
                        "MEASUREMENT_UNAVAILABLE",
                        "QUESTIONABLE_MEASUREMENT",
                        "VALIDATED_DATA",
                    ]
                )
                if flags & 1
                else None
            ),
            "device_status_support": (
                sorted(
                    [
                        "EXTENDED_DISPLAY_UPDATE_ONGOING",
                        "EQUIPMENT_MALFUNCTION",
                        "SIGNAL_PROCESSING_IRREGULARITY",
                        "INADEQUATE_SIGNAL",
                        "POOR_SIGNAL",
                        "LOW_PERFUSION",
                        "ERRATIC_SIGNAL",
                        "NON_PULSATILE_SIGNAL",
                        "QUESTIONABLE_PULSE",
                        "SIGNAL_ANALYSIS_ONGOING",
                        "SENSOR_INTERFERENCE",
                        "SENSOR_UNCONNECTED_TO_USER",
                        "UNKNOWN_SENSOR_CONNECTED",
                        "SENSOR_DISPLACED",
                        "SENSOR_MALFUNCTIONING",
                        "SENSOR_DISCONNECTED",
                    ]
                )
                if flags & 2
                else None
            ),
        }
        cases.append(_case(f"features 0x{raw:04X}", 0x2A60, frame, fields))
    return cases


def main() -> None:
    cases = (
        blood_pressure()
        + temperature()
        + weight()
        + glucose()
        + glucose_context()
        + plx_spot_check()
        + plx_continuous()
        + plx_features()
    )
    lines = ",\n".join(json.dumps(case) for case in cases)
    OUT.write_text(f"[\n{lines}\n]\n", encoding="utf-8")


if __name__ == "__main__":
    main()
