"""Byte-level helpers the characteristic decoders share (internal).

Decoders first work out, from the flags alone, how long the frame must be and refuse
any other length; after that every field read is in bounds. Field rules raise
:class:`FieldError`, which the public decoder turns into its characteristic's own
parse error, so the reason is written once and the characteristic named once.
"""

from __future__ import annotations

import struct

Frame = bytes | bytearray | memoryview
"""What a decoder accepts: bleak hands notifications over as ``bytearray``."""

U16 = struct.Struct("<H")
S16 = struct.Struct("<h")
U32 = struct.Struct("<I")


class FieldError(Exception):
    """A broken rule inside a frame; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_flags(flags: int, defined: int) -> None:
    """Refuse flags with reserved bits: a future field would make the layout unknown."""
    reserved = flags & ~defined & 0xFF
    if reserved:
        raise FieldError(f"flags 0x{flags:02X} set reserved bits 0x{reserved:02X}")


def check_length(data: Frame, expected: int, flags: int) -> None:
    """The frame must be exactly as long as its flags announce: no more, no less."""
    size = len(data)
    if size < expected:
        raise FieldError(f"truncated: {size} bytes, flags 0x{flags:02X} announce {expected}")
    if size > expected:
        raise FieldError(
            f"over-long: {size} bytes, flags 0x{flags:02X} announce {expected}"
            f" ({size - expected} trailing)"
        )


def check_size(data: Frame, expected: int) -> None:
    """For fixed-size characteristics without flags."""
    size = len(data)
    if size != expected:
        word = "truncated" if size < expected else "over-long"
        raise FieldError(f"{word}: {size} bytes, expected {expected}")


def first_byte(data: Frame) -> int:
    if not data:
        raise FieldError("empty frame")
    return data[0]


def u16(data: Frame, offset: int) -> int:
    return int(U16.unpack_from(data, offset)[0])


def s16(data: Frame, offset: int) -> int:
    return int(S16.unpack_from(data, offset)[0])


def u24(data: Frame, offset: int) -> int:
    return data[offset] | data[offset + 1] << 8 | data[offset + 2] << 16


def u32(data: Frame, offset: int) -> int:
    return int(U32.unpack_from(data, offset)[0])


def pack_u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError("does not fit a uint16")
    return U16.pack(value)


def pack_s16(value: int) -> bytes:
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError("does not fit a sint16")
    return S16.pack(value)


def pack_u24(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFF:
        raise ValueError("does not fit a uint24")
    return value.to_bytes(3, "little")


def pack_u8(value: int) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ValueError("does not fit a uint8")
    return bytes((value,))
