"""A small canonical CBOR encoder for the issuing side.

RFC 8949 section 4.2.1 ("core deterministic encoding"): every argument in its
shortest form, definite lengths only, map keys sorted by the bytewise
lexicographic order of their own deterministic encodings. Enough of CBOR for
COSE_Sign1 and CWT claims: int, bytes, str, list/tuple, dict, bool, None and
tags (tag 18 around a COSE_Sign1). Floats, bignums and indefinite lengths are
refused, since nothing we sign needs them.

Note: ``cbor2.dumps(..., canonical=True)`` sorts map keys length-first (the
RFC 7049 order, RFC 8949 section 4.2.3), which differs from the order used here
for maps whose keys encode to different lengths; both orders are deterministic
and the verifier accepts any key order.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["Tag", "CBOREncodeError", "dumps", "encode_head"]

_MAX_UINT64 = (1 << 64) - 1


class CBOREncodeError(TypeError):
    """A value that this encoder does not (deliberately) encode."""


class Tag:
    """A tagged data item, ``number(item)``; tag 18 marks a COSE_Sign1."""

    __slots__ = ("number", "item")

    def __init__(self, number: int, item: Any) -> None:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= _MAX_UINT64:
            raise CBOREncodeError(f"a tag number is an unsigned 64-bit integer, not {number!r}")
        self.number = number
        self.item = item

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tag):
            return NotImplemented
        return self.number == other.number and self.item == other.item

    def __hash__(self) -> int:
        return hash((self.number, repr(self.item)))

    def __repr__(self) -> str:
        return f"Tag({self.number}, {self.item!r})"


def encode_head(major: int, argument: int) -> bytes:
    """The initial byte(s) of an item: major type and its argument in shortest form."""
    mt = major << 5
    if argument < 24:
        return bytes((mt | argument,))
    if argument <= 0xFF:
        return bytes((mt | 24, argument))
    if argument <= 0xFFFF:
        return struct.pack(">BH", mt | 25, argument)
    if argument <= 0xFFFFFFFF:
        return struct.pack(">BI", mt | 26, argument)
    return struct.pack(">BQ", mt | 27, argument)


def dumps(value: Any) -> bytes:
    """Encode ``value`` in RFC 8949 core deterministic encoding."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


# Deeper than any COSE structure we build; stops a self-referencing list early.
_MAX_DEPTH = 64


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise CBOREncodeError("nesting too deep (a cyclic structure?)")
    # bool before int: bool is an int subclass
    if value is False:
        out.append(0xF4)
    elif value is True:
        out.append(0xF5)
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, int):
        if 0 <= value <= _MAX_UINT64:
            out += encode_head(0, value)
        elif -_MAX_UINT64 - 1 <= value < 0:
            out += encode_head(1, -1 - value)
        else:
            raise CBOREncodeError(f"integer outside the 64-bit CBOR range: {value}")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out += encode_head(2, len(data))
        out += data
    elif isinstance(value, str):
        data = value.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError
        out += encode_head(3, len(data))
        out += data
    elif isinstance(value, (list, tuple)):
        out += encode_head(4, len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        encoded = []
        for key, item in value.items():
            key_bytes = bytearray()
            _encode(key, key_bytes, depth + 1)
            encoded.append((bytes(key_bytes), item))
        encoded.sort(key=lambda pair: pair[0])
        for i in range(1, len(encoded)):
            if encoded[i][0] == encoded[i - 1][0]:
                raise CBOREncodeError(f"two map keys encode alike: {encoded[i][0].hex()}")
        out += encode_head(5, len(encoded))
        for key_bytes, item in encoded:
            out += key_bytes
            _encode(item, out, depth + 1)
    elif isinstance(value, Tag):
        out += encode_head(6, value.number)
        _encode(value.item, out, depth + 1)
    else:
        raise CBOREncodeError(f"cannot encode {type(value).__name__} in canonical CBOR")
