"""Property tests over every decoder: any bytes decode or raise that decoder's own parse
error; whatever decodes encodes back to the same bytes; values built from fields survive
encoding and decoding; a frame of the wrong length never decodes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.decoders import DECODERS, Decoder
from tests.drivers.ble.codecs import ENCODERS, valid_frames
from tests.drivers.ble.strategies import VALUES

UUIDS = sorted(DECODERS)
SEEDS = valid_frames()


def _decode_or_own_error(decoder: Decoder, data: bytes) -> object | None:
    """The decoded value, or None after checking the error is the decoder's own."""
    try:
        return decoder.decode(data)
    except decoder.error as exc:
        assert type(exc) is decoder.error
        assert exc.characteristic == decoder.characteristic
        assert exc.reason and str(decoder.characteristic) in str(exc)
        return None


@pytest.mark.parametrize("uuid", UUIDS, ids=[f"0x{u:04X}" for u in UUIDS])
@given(data=st.binary(max_size=40))
def test_any_bytes(uuid: int, data: bytes) -> None:
    decoder = DECODERS[uuid]
    decoded = _decode_or_own_error(decoder, data)
    if decoded is not None:
        assert ENCODERS[uuid](decoded) == data


@pytest.mark.parametrize("uuid", UUIDS, ids=[f"0x{u:04X}" for u in UUIDS])
@given(data=st.data())
def test_valid_layout_with_random_fields(uuid: int, data: st.DataObject) -> None:
    """A real frame's flags and length with random field bytes: dates, codes, specials."""
    seed = data.draw(st.sampled_from(SEEDS[uuid]), label="seed")
    keep = data.draw(st.integers(0, min(2, len(seed))), label="bytes kept")
    body = data.draw(st.binary(min_size=len(seed) - keep, max_size=len(seed) - keep))
    frame = seed[:keep] + body
    decoder = DECODERS[uuid]
    decoded = _decode_or_own_error(decoder, frame)
    if decoded is not None:
        assert ENCODERS[uuid](decoded) == frame


@pytest.mark.parametrize("uuid", UUIDS, ids=[f"0x{u:04X}" for u in UUIDS])
@given(data=st.data())
def test_wrong_length_is_always_refused(uuid: int, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SEEDS[uuid]), label="seed")
    if data.draw(st.booleans(), label="truncate"):
        frame = seed[: data.draw(st.integers(0, len(seed) - 1), label="cut at")]
    else:
        frame = seed + data.draw(st.binary(min_size=1, max_size=8), label="trailing")
    decoder = DECODERS[uuid]
    with pytest.raises(decoder.error):
        decoder.decode(frame)


@pytest.mark.parametrize("uuid", UUIDS, ids=[f"0x{u:04X}" for u in UUIDS])
@given(data=st.data())
def test_fields_round_trip(uuid: int, data: st.DataObject) -> None:
    value = data.draw(VALUES[uuid], label="value")
    assert DECODERS[uuid].decode(ENCODERS[uuid](value)) == value
