"""A Status List Token (WIRE-FORMAT 8), made and signed: the CWT form of the IETF Token Status List.

A COSE_Sign1 exactly as a permit code's (WIRE-FORMAT 2: Ed25519, tag 18, ``alg`` and
``kid`` protected) with ``16`` (typ) ``application/statuslist+cwt`` in its protected
header, over the claims ``2`` sub, ``6`` iat, ``4`` exp, ``65534`` ttl and ``65533``
``{"bits": 1 | 2, "lst": ZLIB(bit array)}``.

The bit array is compressed at zlib's highest level with the run-length strategy
(``Z_RLE``): a list is long runs of zero bytes broken by isolated set bits, which RLE
codes in about a millisecond for a million entries; the default strategy's lazy
matching takes over 100 ms for about 10% fewer bytes (measured in
``benchmarks/test_bench_status_lists.py``). Any inflater reads either.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final

from verifier.index.status_lists import MEDIA_TYPE
from verifier.issuing.keys import IssuerKey
from verifier.issuing.mint import sign_cose

__all__ = ["HEADER_TYP", "compress", "etag_of", "status_list_token"]

HEADER_TYP: Final = 16
"""COSE header parameter ``typ`` (RFC 9596)."""
# CWT claim keys (RFC 8392; the draft's ttl and status_list).
_SUB, _IAT, _EXP, _TTL, _STATUS_LIST = 2, 6, 4, 65534, 65533


def compress(bit_array: bytes) -> bytes:
    """ZLIB (RFC 1950), level 9, run-length strategy (see the module docstring)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return deflate.compress(bit_array) + deflate.flush()


def status_list_token(key: IssuerKey, *, sub: str, bits: int, bit_array: bytes, iat: int, exp: int,
                      ttl: int) -> bytes:
    """The signed token of ``bit_array`` (packed, not yet compressed) as list ``sub``."""
    if bits not in (1, 2):
        raise ValueError(f"a list here has 1 or 2 bits an entry, not {bits!r}")
    if not exp > iat or ttl <= 0:
        raise ValueError(f"a list needs exp after iat and a positive ttl (iat {iat}, exp {exp}, ttl {ttl})")
    claims = {_SUB: sub, _IAT: iat, _EXP: exp, _TTL: ttl,
              _STATUS_LIST: {"bits": bits, "lst": compress(bit_array)}}
    return sign_cose(key, claims, protected_extra={HEADER_TYP: MEDIA_TYPE})


def etag_of(token: bytes) -> str:
    """A strong entity tag (RFC 9110 8.8.3), quoted: 16 hex digits of SHA-256 of the token."""
    return f'"{hashlib.sha256(token).hexdigest()[:16]}"'
