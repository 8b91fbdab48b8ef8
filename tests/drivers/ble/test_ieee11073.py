"""IEEE 11073 SFLOAT/FLOAT: the known values of standards.md §3.3, every special value,
and every one of the 65,536 SFLOAT codes decoded and encoded back."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.ieee11073 import (
    NAN,
    UNSUCCESSFUL,
    NoValue,
    Numeric,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
)
from drivers.ble.weight import WeightMeasurement, WeightResolution
from tests.drivers.ble.codecs import VECTORS

CASES: list[dict[str, Any]] = json.loads((VECTORS / "ieee11073.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_known_values(case: dict[str, Any]) -> None:
    raw = int(case["raw"], 16)
    decode, encode = (
        (decode_sfloat, encode_sfloat)
        if case["format"] == "sfloat"
        else (decode_float, encode_float)
    )
    value = decode(raw)
    if "absent" in case:
        assert value == NoValue(Special(case["absent"]))
        assert isinstance(value, NoValue)
        assert value.data_absent_reason == case["data_absent_reason"]
    else:
        assert value == Numeric(case["m"], case["e"])
        assert str(value) == case["value"]
    assert encode(value) == raw


def test_precision_is_the_exponent_not_the_number() -> None:
    two, two_point_oh_oh = decode_sfloat(0xF014), decode_sfloat(0xE0C8)
    assert isinstance(two, Numeric) and isinstance(two_point_oh_oh, Numeric)
    assert two.decimal == two_point_oh_oh.decimal
    assert str(two) == "2.0" and str(two_point_oh_oh) == "2.00"


def test_every_sfloat_code_round_trips() -> None:
    specials = 0
    for raw in range(0x10000):
        value = decode_sfloat(raw)
        assert encode_sfloat(value) == raw
        if isinstance(value, NoValue):
            specials += 1
            continue
        assert -2048 <= value.mantissa <= 2047 and -8 <= value.exponent <= 7
        assert value.decimal == Decimal(value.mantissa) * Decimal(10) ** value.exponent
    assert specials == 5


@given(st.integers(0, 0xFFFFFFFF))
def test_every_float_code_round_trips(raw: int) -> None:
    value = decode_float(raw)
    assert encode_float(value) == raw
    if isinstance(value, Numeric):
        assert Numeric.of(value.decimal) == value


@pytest.mark.parametrize(
    ("value", "encode"),
    [
        (Numeric(2047, 0), encode_sfloat),  # would read back as NaN
        (Numeric(-2048, 0), encode_sfloat),  # NRes
        (Numeric(2048, 0), encode_sfloat),
        (Numeric(1, 8), encode_sfloat),
        (Numeric(0x7FFFFF, 0), encode_float),  # NaN
        (Numeric(1, 128), encode_float),
        (UNSUCCESSFUL, encode_sfloat),
        (UNSUCCESSFUL, encode_float),
    ],
)
def test_encoders_refuse_what_would_not_read_back(value: Any, encode: Any) -> None:
    with pytest.raises(ValueError):
        encode(value)


def test_raw_codes_out_of_range_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        decode_sfloat(0x10000)
    with pytest.raises(ValueError):
        decode_float(-1)


def test_numeric_of_keeps_trailing_zeros_and_refuses_non_finite() -> None:
    assert Numeric.of(Decimal("72.500")) == Numeric(72500, -3)
    assert Numeric.of(Decimal("-1.5")) == Numeric(-15, -1)
    with pytest.raises(ValueError):
        Numeric.of(Decimal("NaN"))
    assert str(NAN) == "<nan>"


def test_readings_do_not_depend_on_the_threads_decimal_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        assert str(decode_float(0x007FFFFD)) == "8388605"
        assert str(WeightMeasurement(imperial=False, weight_raw=14501).weight) == "72.505"
        rounded = WeightMeasurement(imperial=False, weight_raw=14501).weight_at(
            WeightResolution.KG_0_01_OR_LB_0_02
        )
        assert str(rounded) == "72.50"
