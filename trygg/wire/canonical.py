"""RFC 8785 (JCS) canonical JSON, refusing floats.

Floats are refused rather than canonicalised: two JSON stacks rarely agree on the shortest
form of a double, and a measured value must survive every hop exactly. Values travel as
decimal strings or mantissa/exponent pairs instead.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

JsonScalar = str | int | bool | None
JsonValue = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalJsonError(ValueError):
    """The value cannot be signed: it holds a float, an unsafe integer or a foreign type."""


def check_signable(value: Any, path: str = "$") -> None:
    """Raise CanonicalJsonError unless ``value`` is JSON made of strings, safe ints, bools."""
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJsonError(f"{path}: integer outside the I-JSON safe range")
        return
    if isinstance(value, float):
        raise CanonicalJsonError(f"{path}: floats are not allowed in signed payloads")
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_signable(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJsonError(f"{path}: object keys must be strings")
            check_signable(item, f"{path}.{key}")
        return
    raise CanonicalJsonError(f"{path}: {type(value).__name__} is not JSON")


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical bytes of ``value`` after checking it is signable."""
    check_signable(value)
    return bytes(rfc8785.dumps(value))


def parse_json_object(raw: bytes | str) -> dict[str, Any]:
    """Parse I-JSON text into a dict, refusing duplicate keys, NaN and non-objects."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, val in pairs:
            if key in result:
                raise CanonicalJsonError(f"duplicate key {key!r}")
            result[key] = val
        return result

    def no_constants(name: str) -> Any:
        raise CanonicalJsonError(f"{name} is not JSON")

    try:
        value = json.loads(raw, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise CanonicalJsonError(f"malformed JSON: {exc.msg} at {exc.pos}") from exc
    except UnicodeDecodeError as exc:
        raise CanonicalJsonError("JSON is not valid UTF-8") from exc
    except RecursionError as exc:
        raise CanonicalJsonError("JSON nests too deeply") from exc
    if not isinstance(value, dict):
        raise CanonicalJsonError("expected a JSON object")
    return value
