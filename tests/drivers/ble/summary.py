"""A decoded value as plain JSON, so byte vectors in files can state what they decode to.

Numbers become their exact decimal text (``"2.00"`` is not ``"2.0"``), special values
``"<nan>"`` and the like, device times ISO text or ``"unknown ..."``, enumerations
their member name, flag sets a sorted list of member names (plus any reserved bits as
hex). A dataclass becomes its fields plus its public properties, so derived values
(quality flags, weight in kg, glucose time) are pinned by the vectors too.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum, Flag
from typing import Any

from drivers.ble.date_time import DeviceTime
from drivers.ble.ieee11073 import NoValue, Numeric


def summarize(value: Any) -> Any:
    if value is None or (isinstance(value, bool | str) and not isinstance(value, Enum)):
        return value
    if isinstance(value, Numeric | NoValue | DeviceTime):
        return str(value)
    if isinstance(value, Flag):
        return _flag_names(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(str(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: summarize(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name, attr in vars(type(value)).items():
            if isinstance(attr, property) and not name.startswith("_"):
                out[name] = summarize(getattr(value, name))
        return out
    raise TypeError(f"no summary for {type(value).__name__}")


def _flag_names(value: Flag) -> list[str]:
    names: list[str] = []
    known = 0
    for member in type(value):
        known |= member.value
        if member in value and member.name is not None:
            names.append(member.name)
    rest = value.value & ~known
    if rest:
        names.append(f"0x{rest:X}")
    return sorted(names)
