"""The parse errors every decoder raises, and nothing else.

Each characteristic module subclasses :class:`BleParseError`, so a caller can catch one
characteristic's failures or all of them. A reason names the field and the rule it
broke (lengths, flag bits, enumeration codes, calendar fields), never a measured value:
the frames carry health data and reasons go to logs.
"""

from __future__ import annotations

from drivers.ble.gatt import Characteristic


class BleParseError(ValueError):
    """A frame that cannot be used; ``str()`` names the characteristic and the reason."""

    def __init__(self, characteristic: Characteristic, reason: str) -> None:
        super().__init__(f"{characteristic}: {reason}")
        self.characteristic = characteristic
        self.reason = reason
