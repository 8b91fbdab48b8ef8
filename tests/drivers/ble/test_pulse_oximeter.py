"""PLX Features decide which fields an oximeter may send: a frame carrying a field its
device said it cannot send is refused once the features are known."""

from __future__ import annotations

import pytest

from drivers.ble.pulse_oximeter import (
    PlxSupportedFeatures,
    PulseOximeterParseError,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
)
from tests.drivers.ble.codecs import frame

SPOT_WITH_TIME_AND_STATUS = frame("03 6100 4000 E907030E081E00 0044")
CONTINUOUS_WITH_FAST_AND_PAI = frame("11 6200 4800 6100 4A00 2DF0")


def test_features_that_cover_the_fields_let_the_frames_through() -> None:
    features = decode_plx_features(frame("5900 E0FF"))  # status, timestamp, fast, PAI
    assert features.supported & PlxSupportedFeatures.SPOT_CHECK_TIMESTAMP
    assert decode_plx_spot_check(SPOT_WITH_TIME_AND_STATUS, features).timestamp is not None
    assert decode_plx_continuous(CONTINUOUS_WITH_FAST_AND_PAI, features).fast is not None


@pytest.mark.parametrize(
    ("features_hex", "reason"),
    [
        ("0100 E0FF", "carries a timestamp, which the device's PLX Features leave out"),
        ("0800", "carries a measurement status"),
    ],
)
def test_spot_check_fields_the_device_does_not_support(features_hex: str, reason: str) -> None:
    features = decode_plx_features(frame(features_hex))
    with pytest.raises(PulseOximeterParseError, match=reason):
        decode_plx_spot_check(SPOT_WITH_TIME_AND_STATUS, features)


@pytest.mark.parametrize(
    ("features_hex", "reason"),
    [("4000", "carries SpO2PR-Fast"), ("1000", "carries a pulse amplitude index")],
)
def test_continuous_fields_the_device_does_not_support(features_hex: str, reason: str) -> None:
    features = decode_plx_features(frame(features_hex))
    with pytest.raises(PulseOximeterParseError, match=reason):
        decode_plx_continuous(CONTINUOUS_WITH_FAST_AND_PAI, features)
