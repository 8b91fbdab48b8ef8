"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) numbers (standards.md §3.3).

A reading keeps the mantissa and exponent the device sent: ``0xF014`` is 2.0 and
``0xE0C8`` is 2.00, and the difference is the precision the device claims. The special
values (NaN, NRes, ±INFINITY and the reserved code) are checked *before* any arithmetic
and become :class:`NoValue` with a reason, never a number, so a cuff that failed to
measure cannot turn into a blood pressure of 2047.

The exponent is a plain two's-complement integer, not biased (one PyPI package gets
this wrong; see standards.md §3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from enum import StrEnum

from drivers.ble._frame import U16, U32, Frame


class Special(StrEnum):
    """Why a number field carries no value."""

    NAN = "nan"
    NRES = "nres"
    """Not at this resolution: the value cannot be expressed with the field's precision."""
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"
    UNSUCCESSFUL = "unsuccessful"
    """Not an IEEE 11073 code: a field's own "measurement unsuccessful" (weight 0xFFFF)."""

    @property
    def data_absent_reason(self) -> str:
        """The FHIR ``dataAbsentReason`` code the PHD IG maps this special value to."""
        return _DATA_ABSENT_REASON[self]


EXACT = Context(prec=40)
"""Arithmetic on readings uses its own context, not the thread's: 40 digits hold any
FLOAT mantissa scaled anywhere, so nothing here ever rounds."""

_DATA_ABSENT_REASON = {
    Special.NAN: "not-a-number",
    Special.NRES: "error",
    Special.POSITIVE_INFINITY: "positive-infinity",
    Special.NEGATIVE_INFINITY: "negative-infinity",
    Special.RESERVED: "error",
    Special.UNSUCCESSFUL: "error",
}

DATA_ABSENT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


@dataclass(frozen=True, slots=True)
class Numeric:
    """``mantissa × 10^exponent``, exactly as sent; :attr:`decimal` keeps the precision."""

    mantissa: int
    exponent: int

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.mantissa).scaleb(self.exponent, context=EXACT)

    @classmethod
    def of(cls, value: Decimal) -> Numeric:
        """The mantissa and exponent of a finite Decimal, keeping its trailing zeros."""
        sign, digits, exponent = value.as_tuple()
        if not isinstance(exponent, int):
            raise ValueError("not a finite number")
        mantissa = int("".join(map(str, digits)) or "0")
        return cls(-mantissa if sign else mantissa, exponent)

    def __str__(self) -> str:
        return str(self.decimal)


@dataclass(frozen=True, slots=True)
class NoValue:
    """A number field that holds no value, and why."""

    reason: Special

    @property
    def data_absent_reason(self) -> str:
        return self.reason.data_absent_reason

    def __str__(self) -> str:
        return f"<{self.reason.value}>"


Value = Numeric | NoValue
"""What a number field decodes to: a number, or no value with a reason."""

NAN = NoValue(Special.NAN)
NRES = NoValue(Special.NRES)
POSITIVE_INFINITY = NoValue(Special.POSITIVE_INFINITY)
NEGATIVE_INFINITY = NoValue(Special.NEGATIVE_INFINITY)
RESERVED = NoValue(Special.RESERVED)
UNSUCCESSFUL = NoValue(Special.UNSUCCESSFUL)

_SFLOAT_SPECIALS: dict[int, NoValue] = {
    0x07FF: NAN,
    0x0800: NRES,
    0x07FE: POSITIVE_INFINITY,
    0x0802: NEGATIVE_INFINITY,
    0x0801: RESERVED,
}
_FLOAT_SPECIALS: dict[int, NoValue] = {
    0x007FFFFF: NAN,
    0x00800000: NRES,
    0x007FFFFE: POSITIVE_INFINITY,
    0x00800002: NEGATIVE_INFINITY,
    0x00800001: RESERVED,
}
_SFLOAT_CODES = {value.reason: raw for raw, value in _SFLOAT_SPECIALS.items()}
_FLOAT_CODES = {value.reason: raw for raw, value in _FLOAT_SPECIALS.items()}

SFLOAT_MANTISSA = (-0x800, 0x7FF)
SFLOAT_EXPONENT = (-8, 7)
FLOAT_MANTISSA = (-0x800000, 0x7FFFFF)
FLOAT_EXPONENT = (-128, 127)


def decode_sfloat(raw: int) -> Value:
    """A 16-bit SFLOAT: 4-bit exponent (bits 15-12), 12-bit mantissa (bits 11-0)."""
    if not 0 <= raw <= 0xFFFF:
        raise ValueError("an SFLOAT is 16 bits")
    special = _SFLOAT_SPECIALS.get(raw)
    if special is not None:
        return special
    mantissa = raw & 0x0FFF
    if mantissa & 0x0800:
        mantissa -= 0x1000
    exponent = raw >> 12
    if exponent & 0x8:
        exponent -= 0x10
    return Numeric(mantissa, exponent)


def decode_float(raw: int) -> Value:
    """A 32-bit FLOAT: 8-bit exponent (bits 31-24), 24-bit mantissa (bits 23-0)."""
    if not 0 <= raw <= 0xFFFFFFFF:
        raise ValueError("a FLOAT is 32 bits")
    special = _FLOAT_SPECIALS.get(raw)
    if special is not None:
        return special
    mantissa = raw & 0xFFFFFF
    if mantissa & 0x800000:
        mantissa -= 0x1000000
    exponent = raw >> 24
    if exponent & 0x80:
        exponent -= 0x100
    return Numeric(mantissa, exponent)


def encode_sfloat(value: Value) -> int:
    """The raw SFLOAT for ``value``; ValueError if it does not fit or would read as special."""
    if isinstance(value, NoValue):
        if value.reason not in _SFLOAT_CODES:
            raise ValueError("no SFLOAT code for this reason")
        return _SFLOAT_CODES[value.reason]
    m, e = value.mantissa, value.exponent
    if not (SFLOAT_MANTISSA[0] <= m <= SFLOAT_MANTISSA[1]) or not (
        SFLOAT_EXPONENT[0] <= e <= SFLOAT_EXPONENT[1]
    ):
        raise ValueError("mantissa or exponent out of SFLOAT range")
    raw = (e & 0xF) << 12 | (m & 0x0FFF)
    if raw in _SFLOAT_SPECIALS:
        raise ValueError("this mantissa with exponent 0 is a special value in SFLOAT")
    return raw


def encode_float(value: Value) -> int:
    """The raw FLOAT for ``value``; ValueError if it does not fit or would read as special."""
    if isinstance(value, NoValue):
        if value.reason not in _FLOAT_CODES:
            raise ValueError("no FLOAT code for this reason")
        return _FLOAT_CODES[value.reason]
    m, e = value.mantissa, value.exponent
    if not (FLOAT_MANTISSA[0] <= m <= FLOAT_MANTISSA[1]) or not (
        FLOAT_EXPONENT[0] <= e <= FLOAT_EXPONENT[1]
    ):
        raise ValueError("mantissa or exponent out of FLOAT range")
    raw = (e & 0xFF) << 24 | (m & 0xFFFFFF)
    if raw in _FLOAT_SPECIALS:
        raise ValueError("this mantissa with exponent 0 is a special value in FLOAT")
    return raw


def sfloat_at(data: Frame, offset: int) -> Value:
    return decode_sfloat(U16.unpack_from(data, offset)[0])


def float_at(data: Frame, offset: int) -> Value:
    return decode_float(U32.unpack_from(data, offset)[0])


def pack_sfloat(value: Value) -> bytes:
    return U16.pack(encode_sfloat(value))


def pack_float(value: Value) -> bytes:
    return U32.pack(encode_float(value))
