"""Each characteristic's encoder beside its decoder, for round-trip tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.ble.battery import encode_battery_level
from drivers.ble.blood_pressure import encode_blood_pressure
from drivers.ble.date_time import encode_current_time, encode_date_time
from drivers.ble.glucose import encode_glucose, encode_glucose_context
from drivers.ble.pulse_oximeter import (
    encode_plx_continuous,
    encode_plx_features,
    encode_plx_spot_check,
)
from drivers.ble.racp import encode_racp_response
from drivers.ble.temperature import encode_temperature
from drivers.ble.weight import encode_weight, encode_weight_scale_feature

VECTORS = Path(__file__).parent / "vectors"

ENCODERS: dict[int, Callable[[Any], bytes]] = {
    0x2A35: encode_blood_pressure,
    0x2A36: encode_blood_pressure,
    0x2A1C: encode_temperature,
    0x2A1D: lambda site: bytes((int(site),)),
    0x2A9D: encode_weight,
    0x2A9E: encode_weight_scale_feature,
    0x2A18: encode_glucose,
    0x2A34: encode_glucose_context,
    0x2A52: encode_racp_response,
    0x2A5E: encode_plx_spot_check,
    0x2A5F: encode_plx_continuous,
    0x2A60: encode_plx_features,
    0x2A08: encode_date_time,
    0x2A2B: encode_current_time,
    0x2A19: encode_battery_level,
}


def frame(text: str) -> bytes:
    """Hex as written in the vector files: spaces anywhere are ignored."""
    return bytes.fromhex(text.replace(" ", ""))


def vector_cases(
    *, exclude: tuple[str, ...] = ("ieee11073.json",)
) -> list[tuple[str, dict[str, Any]]]:
    """(file: name, case) for every frame vector in ``vectors/``."""
    cases = []
    for path in sorted(VECTORS.glob("*.json")):
        if path.name in exclude:
            continue
        for case in json.loads(path.read_text(encoding="utf-8")):
            cases.append((f"{path.stem}: {case['name']}", case))
    return cases


def valid_frames() -> dict[int, list[bytes]]:
    """Every vector that decodes, by characteristic: seeds for mutation fuzzing."""
    frames: dict[int, list[bytes]] = {}
    for _, case in vector_cases():
        if "error" not in case:
            frames.setdefault(int(case["characteristic"], 16), []).append(frame(case["hex"]))
    return frames
