"""An independent reader of Status List Tokens, written from the draft's text alone.

draft-ietf-oauth-status-list ("Status List", "Status List Token in CWT Format"): the
token is a COSE_Sign1 whose payload is a CWT claims set; claim 65533 is a map
``{"bits": 1|2|4|8, "lst": ZLIB(byte array)}``; in the byte array, "the bits within
an array are counted from least significant bit 0 to the most significant bit 7",
entry ``i`` taking the ``bits`` bits from bit ``i * bits``. The container is read with
cbor2 and zlib, the signature checked with PyNaCl: nothing here is the code that wrote
the lists (verifier.status_lists) or the one that verifies them (fastpath.status_list).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import cbor2
import nacl.exceptions
import nacl.signing

COSE_SIGN1 = 18
TYP, ALG, KID = 16, 1, 4
SUB, IAT, EXP, TTL, STATUS_LIST = 2, 6, 4, 65534, 65533


@dataclass
class Read:
    protected: dict[int, Any]
    unprotected: dict[Any, Any]
    claims: dict[int, Any]
    bits: int
    array: bytes
    signed: bytes
    signature: bytes

    def entry(self, index: int) -> int:
        """Entry ``index``, by the draft's rule."""
        first_bit = index * self.bits
        byte = self.array[first_bit // 8]
        return (byte >> (first_bit % 8)) & ((1 << self.bits) - 1)

    def entries(self, count: int | None = None) -> list[int]:
        count = len(self.array) * 8 // self.bits if count is None else count
        return [self.entry(i) for i in range(count)]

    def signed_by(self, public_key: bytes) -> bool:
        try:
            nacl.signing.VerifyKey(public_key).verify(self.signed, self.signature)
        except nacl.exceptions.BadSignatureError:
            return False
        return True


def read_status_list(status_list: dict[str, Any]) -> tuple[int, bytes]:
    """(bits, the inflated byte array) of a claim-65533 map."""
    bits = status_list["bits"]
    assert bits in (1, 2, 4, 8), bits
    return bits, zlib.decompress(status_list["lst"])


def read_token(token: bytes) -> Read:
    outer = cbor2.loads(token)
    message = outer.value if isinstance(outer, cbor2.CBORTag) else outer
    if isinstance(outer, cbor2.CBORTag):
        assert outer.tag == COSE_SIGN1, outer.tag
    protected_bytes, unprotected, payload, signature = message
    protected = cbor2.loads(protected_bytes) if protected_bytes else {}
    claims = cbor2.loads(payload)
    bits, array = read_status_list(claims[STATUS_LIST])
    signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    return Read(protected, unprotected, claims, bits, array, signed, signature)
