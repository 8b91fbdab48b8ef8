"""Record Access Control Point requests, byte for byte (standards.md §3.4.4), and the
meter's side of them, which an emulated glucose meter needs."""

from __future__ import annotations

import pytest

from drivers.ble.racp import (
    NumberOfRecords,
    Opcode,
    Operator,
    RacpParseError,
    RacpRequest,
    RacpResponse,
    ResponseCode,
    decode_racp_request,
    decode_racp_response,
    request_abort,
    request_all_records,
    request_number_of_records,
    request_records_from,
)
from tests.drivers.ble.codecs import frame


def test_requests_are_the_documented_bytes() -> None:
    assert request_all_records() == frame("01 01")
    assert request_records_from(0x1234) == frame("01 03 01 34 12")
    assert request_records_from(0) == frame("01 03 01 00 00")
    assert request_records_from(0xFFFF) == frame("01 03 01 FF FF")
    assert request_number_of_records() == frame("04 01")
    assert request_number_of_records(5) == frame("04 03 01 05 00")
    assert request_abort() == frame("03 00")


@pytest.mark.parametrize("sequence", [-1, 0x10000])
def test_a_sequence_number_is_a_uint16(sequence: int) -> None:
    with pytest.raises(ValueError):
        request_records_from(sequence)


def test_an_emulated_meter_reads_every_request_we_write() -> None:
    assert decode_racp_request(request_all_records()) == RacpRequest(
        Opcode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS
    )
    assert decode_racp_request(request_records_from(42)) == RacpRequest(
        Opcode.REPORT_STORED_RECORDS, Operator.GREATER_OR_EQUAL, 42
    )
    assert decode_racp_request(request_number_of_records(7)) == RacpRequest(
        Opcode.REPORT_NUMBER_OF_RECORDS, Operator.GREATER_OR_EQUAL, 7
    )
    assert decode_racp_request(request_abort()) == RacpRequest(
        Opcode.ABORT_OPERATION, Operator.NULL
    )


@pytest.mark.parametrize(
    ("hex_text", "reason"),
    [
        ("", "empty frame"),
        ("02 01", "op code 0x02 is not a supported request"),
        ("01", "no operator"),
        ("01 02 01 05 00", "operator 0x02 is not supported"),
        ("01 03 02 05 00", "filter type 0x02 is not supported"),
        ("01 03 01 05", "truncated: 4 bytes, expected 5"),
        ("01 01 00", "over-long: 3 bytes, expected 2"),
        ("03 01", "operator 0x01 in a response"),
    ],
)
def test_requests_we_never_write_are_refused(hex_text: str, reason: str) -> None:
    with pytest.raises(RacpParseError, match=reason):
        decode_racp_request(frame(hex_text))


def test_responses_end_the_procedure_or_count() -> None:
    assert decode_racp_response(frame("05 00 0300")) == NumberOfRecords(3)
    done = decode_racp_response(frame("06 00 01 01"))
    assert done == RacpResponse(Opcode.REPORT_STORED_RECORDS, ResponseCode.SUCCESS)
    assert done.ok
    failed = decode_racp_response(frame("06 00 01 08"))
    assert isinstance(failed, RacpResponse)
    assert failed.code is ResponseCode.PROCEDURE_NOT_COMPLETED and not failed.ok
