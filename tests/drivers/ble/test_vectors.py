"""Byte vectors from ``vectors/``: the worked examples of standards.md §3.4, every flag
combination of every layout, special values, edge cases and bad frames."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.ble.decoders import DECODERS
from tests.drivers.ble.codecs import ENCODERS, frame, vector_cases
from tests.drivers.ble.summary import summarize

CASES = vector_cases()


def test_the_files_hold_what_the_brief_asks_for() -> None:
    names = {name.split(":")[0] for name, _ in CASES}
    assert {"worked_examples", "flag_combinations", "edge_frames", "bad_frames"} <= names
    assert sum(1 for name, _ in CASES if name.startswith("worked_examples")) == 8
    # Every decoder has at least one good and one bad vector.
    good = {int(c["characteristic"], 16) for _, c in CASES if "error" not in c}
    bad = {int(c["characteristic"], 16) for _, c in CASES if "error" in c}
    assert good == bad == set(DECODERS)


@pytest.mark.parametrize(("case"), [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_vector(case: dict[str, Any]) -> None:
    decoder = DECODERS[int(case["characteristic"], 16)]
    data = frame(case["hex"])
    if "error" in case:
        with pytest.raises(decoder.error) as caught:
            decoder.decode(data)
        assert caught.value.characteristic == decoder.characteristic
        assert case["error"] in str(caught.value)
        return
    decoded = decoder.decode(data)
    summary = summarize(decoded)
    if "fields" in case:
        assert summary == case["fields"]
    else:
        assert {key: summary[key] for key in case["subset"]} == case["subset"]
    # Nothing the frame said is lost: encoding the decoded value gives the frame back.
    assert ENCODERS[decoder.characteristic.uuid16](decoded) == data


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decoders_take_what_bleak_and_bumble_hand_over(kind: type) -> None:
    for _, case in CASES:
        if "error" in case:
            continue
        decoder = DECODERS[int(case["characteristic"], 16)]
        data = frame(case["hex"])
        assert decoder.decode(kind(data)) == decoder.decode(data)
