"""canonical_json's json.dumps fast path must give exactly the bytes rfc8785 gives."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from trygg.wire.canonical import CanonicalJsonError, canonical_json

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _TEXT
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=6))
def test_canonical_bytes_equal_the_reference_implementation(value: dict[str, Any]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_every_control_character_is_escaped_as_jcs_requires() -> None:
    value = {"k": "".join(chr(i) for i in range(0x100)) + "\u2028\u2029\ufeff\U0001f600"}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_keys_beyond_the_bmp_sort_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FF01 there but after it by code point.
    value = {"\uff01": 1, "\U0001f600": 2}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).index("\U0001f600".encode()) < canonical_json(value).index(
        "\uff01".encode()
    )


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError):
        canonical_json({"k": "\ud800"})
    with pytest.raises(CanonicalJsonError):
        canonical_json({"k": 1.5})


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},
        {"a": {2: "b"}},
        {"\U0001f600": 1.5},
        {"\U0001f600": [1, {"x": 0.1}]},
        {"a": [2**53]},
        {"a": {"b": [{"c": b"bytes"}]}},
        {"a": (1, 2)},
    ],
)
def test_nothing_unsignable_slips_through_at_any_depth(value: dict[Any, Any]) -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json(value)
