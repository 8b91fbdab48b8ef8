"""Record Access Control Point 0x2A52: ask a meter for its stored records (§3.4.4).

Requests are written as ``[op code, operator, operand…]``; the meter notifies the records
on their own characteristics and then indicates a response here: a number of records,
or a response code for the request. The driver asks for "records with sequence number
≥ last seen + 1" after a reconnect, so only new records arrive. Deleting records is
deliberately not offered: the meter's memory is the person's backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from drivers.ble._frame import FieldError, Frame, check_size, first_byte, pack_u16, u16
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import RECORD_ACCESS_CONTROL_POINT


class RacpParseError(BleParseError):
    """A Record Access Control Point indication that cannot be used."""


class Opcode(IntEnum):
    REPORT_STORED_RECORDS = 0x01
    DELETE_STORED_RECORDS = 0x02
    ABORT_OPERATION = 0x03
    REPORT_NUMBER_OF_RECORDS = 0x04
    NUMBER_OF_RECORDS_RESPONSE = 0x05
    RESPONSE_CODE = 0x06


class Operator(IntEnum):
    NULL = 0x00
    ALL_RECORDS = 0x01
    LESS_OR_EQUAL = 0x02
    GREATER_OR_EQUAL = 0x03
    WITHIN_RANGE = 0x04
    FIRST_RECORD = 0x05
    LAST_RECORD = 0x06


class FilterType(IntEnum):
    SEQUENCE_NUMBER = 0x01
    USER_FACING_TIME = 0x02


class ResponseCode(IntEnum):
    SUCCESS = 0x01
    OPCODE_NOT_SUPPORTED = 0x02
    INVALID_OPERATOR = 0x03
    OPERATOR_NOT_SUPPORTED = 0x04
    INVALID_OPERAND = 0x05
    NO_RECORDS_FOUND = 0x06
    ABORT_UNSUCCESSFUL = 0x07
    PROCEDURE_NOT_COMPLETED = 0x08
    OPERAND_NOT_SUPPORTED = 0x09


def request_all_records() -> bytes:
    """``01 01``: report every stored record."""
    return bytes((Opcode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS))


def request_records_from(sequence: int) -> bytes:
    """``01 03 01 lo hi``: report records whose sequence number is ≥ ``sequence``."""
    return _from(Opcode.REPORT_STORED_RECORDS, sequence)


def request_number_of_records(from_sequence: int | None = None) -> bytes:
    """``04 01`` (all records) or ``04 03 01 lo hi`` (those ≥ ``from_sequence``)."""
    if from_sequence is None:
        return bytes((Opcode.REPORT_NUMBER_OF_RECORDS, Operator.ALL_RECORDS))
    return _from(Opcode.REPORT_NUMBER_OF_RECORDS, from_sequence)


def request_abort() -> bytes:
    """``03 00``: stop a report in progress."""
    return bytes((Opcode.ABORT_OPERATION, Operator.NULL))


def _from(opcode: Opcode, sequence: int) -> bytes:
    if not 0 <= sequence <= 0xFFFF:
        raise ValueError("a sequence number is a uint16")
    header = bytes((opcode, Operator.GREATER_OR_EQUAL, FilterType.SEQUENCE_NUMBER))
    return header + pack_u16(sequence)


@dataclass(frozen=True, slots=True)
class NumberOfRecords:
    """The answer to "report number of records"."""

    count: int


@dataclass(frozen=True, slots=True)
class RacpResponse:
    """The end of a procedure: which request it answers, and how it went."""

    request: Opcode
    code: ResponseCode

    @property
    def ok(self) -> bool:
        """Success, or nothing to report: both mean the meter has sent all it will."""
        return self.code in (ResponseCode.SUCCESS, ResponseCode.NO_RECORDS_FOUND)


_REQUESTS = frozenset(
    (
        Opcode.REPORT_STORED_RECORDS,
        Opcode.DELETE_STORED_RECORDS,
        Opcode.ABORT_OPERATION,
        Opcode.REPORT_NUMBER_OF_RECORDS,
    )
)


def decode_racp_response(data: Frame) -> NumberOfRecords | RacpResponse:
    """An indication on 0x2A52: ``05 00 <u16 count>`` or ``06 00 <request> <code>``."""
    try:
        opcode = first_byte(data)
        if opcode == Opcode.NUMBER_OF_RECORDS_RESPONSE:
            check_size(data, 4)
            _null_operator(data[1])
            return NumberOfRecords(u16(data, 2))
        if opcode != Opcode.RESPONSE_CODE:
            raise FieldError(f"op code 0x{opcode:02X} is not a response")
        check_size(data, 4)
        _null_operator(data[1])
        request, code = data[2], data[3]
        if request not in _REQUESTS:
            raise FieldError(f"response to op code 0x{request:02X}, which is not a request")
        if not ResponseCode.SUCCESS <= code <= ResponseCode.OPERAND_NOT_SUPPORTED:
            raise FieldError(f"response code 0x{code:02X} is reserved")
        return RacpResponse(Opcode(request), ResponseCode(code))
    except FieldError as exc:
        raise RacpParseError(RECORD_ACCESS_CONTROL_POINT, exc.reason) from None


def _null_operator(operator: int) -> None:
    if operator != Operator.NULL:
        raise FieldError(f"operator 0x{operator:02X} in a response (must be 0x00)")


def encode_racp_response(response: NumberOfRecords | RacpResponse) -> bytes:
    """The indication a meter would send (for simulators and round-trip tests)."""
    if isinstance(response, NumberOfRecords):
        return bytes((Opcode.NUMBER_OF_RECORDS_RESPONSE, Operator.NULL)) + pack_u16(response.count)
    return bytes((Opcode.RESPONSE_CODE, Operator.NULL, response.request, response.code))


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A request as a meter reads it (what an emulated meter needs to answer)."""

    opcode: Opcode
    operator: Operator
    from_sequence: int | None = None
    """The operand of ``GREATER_OR_EQUAL`` with a sequence-number filter."""


def decode_racp_request(data: Frame) -> RacpRequest:
    """The requests this module writes: all, ≥ sequence number, or abort."""
    try:
        opcode = first_byte(data)
        if opcode == Opcode.ABORT_OPERATION:
            check_size(data, 2)
            _null_operator(data[1])
            return RacpRequest(Opcode.ABORT_OPERATION, Operator.NULL)
        if opcode not in (Opcode.REPORT_STORED_RECORDS, Opcode.REPORT_NUMBER_OF_RECORDS):
            raise FieldError(f"op code 0x{opcode:02X} is not a supported request")
        if len(data) < 2:
            raise FieldError("truncated: no operator")
        operator = data[1]
        if operator == Operator.ALL_RECORDS:
            check_size(data, 2)
            return RacpRequest(Opcode(opcode), Operator.ALL_RECORDS)
        if operator != Operator.GREATER_OR_EQUAL:
            raise FieldError(f"operator 0x{operator:02X} is not supported")
        check_size(data, 5)
        if data[2] != FilterType.SEQUENCE_NUMBER:
            raise FieldError(f"filter type 0x{data[2]:02X} is not supported")
        return RacpRequest(Opcode(opcode), Operator.GREATER_OR_EQUAL, u16(data, 3))
    except FieldError as exc:
        raise RacpParseError(RECORD_ACCESS_CONTROL_POINT, exc.reason) from None
