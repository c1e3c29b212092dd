"""SM2 with SM3 (WIRE-FORMAT 9): the rules both twins share, and a trusted SM2 key.

SM2 is the elliptic-curve signature of GB/T 32918 over its recommended 256-bit
curve (GB/T 32918.5, "sm2p256v1", cofactor 1), with the message hashed by SM3
(GB/T 32905) after ``Z``, a hash of the signer's user id and public key. Nothing
here does curve arithmetic: a trusted key is validated and signatures are
verified by libraries, twice over at load (gmalg and, when the compiled twin is
built, OpenSSL):

- the compiled twin verifies through OpenSSL 3's libcrypto (``_sm2_c``, the
  ``openssl`` member of :class:`Sm2PublicKey`);
- the pure-Python twin verifies through gmalg (:func:`verify_with_gmalg`), a
  pure-Python implementation of GB/T 32918 that shares no code with OpenSSL, so
  that the tests that compare the twins compare two implementations. The
  compiled twin uses it too, and says so in ``fastpath.SM2_BACKEND``, when this
  process's libcrypto has no SM2 (some distributions build OpenSSL without it).
"""

from __future__ import annotations

import functools

import gmalg
from gmalg.errors import GMError

from ._compat import NO_EXTENSIONS

__all__ = [
    "ALG_EDDSA",
    "ALG_SM2_SM3",
    "DEFAULT_USER_ID",
    "JWK_ALG_SM2_SM3",
    "LIBCRYPTO_SONAME",
    "MAX_USER_ID",
    "N",
    "P",
    "Sm2PublicKey",
    "load_public_key",
    "signature_in_range",
    "verify_with_gmalg",
]

ALG_EDDSA = -8
ALG_SM2_SM3 = -65537
"""COSE ``alg`` for SM2 with SM3: the first value of COSE's private-use range
(below -65536); IANA has registered none (WIRE-FORMAT 9)."""
JWK_ALG_SM2_SM3 = "SM2-SM3"
"""The JWK ``alg`` of an SM2 key, when the key states one."""

DEFAULT_USER_ID = b"1234567812345678"
"""The user id (distinguishing identifier, ``ID_A``) when the key states none: the
default of GM/T 0009-2012 and GB/T 35276-2017 for SM2 signatures under GB/T 32918."""
MAX_USER_ID = 8191
"""Bytes, at most: ``ENTL``, the id's length in bits, is two bytes (GB/T 32918.2)."""

# GB/T 32918.5: the field prime p and the order n of the base point (cofactor 1).
P = 0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFF
N = 0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_7203DF6B_21C6052B_53BBF409_39D54123
N_BYTES = N.to_bytes(32, "big")
"""n big-endian: the compiled twin compares r and s with it byte by byte."""

LIBCRYPTO_SONAME = "libcrypto.so.3"
"""OpenSSL 3's libcrypto, opened by its soname after ``import _ssl``: the dynamic linker
then gives the copy Python's ssl module already loaded, if it loaded one (the
compiled twin verifies through it, the issuing side signs through it)."""

# DER SubjectPublicKeyInfo of an SM2 key before its 65-byte point (RFC 5480 with
# the SM2 curve OID 1.2.156.10197.1.301): how libcrypto takes a public key in.
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")

_GMALG_CURVE = gmalg.SM2()  # no key: its verify_pk only checks a point


def signature_in_range(signature: bytes) -> bool:
    """WIRE-FORMAT 9: ``r`` and ``s`` (64 bytes, big-endian halves) each in [1, n - 1]."""
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    return 0 < r < N and 0 < s < N


@functools.lru_cache(maxsize=1024)
def _gmalg_accepts(point: bytes) -> bool:
    """gmalg's public-key validation: on the curve, not the point at infinity, and n * Q
    the point at infinity (order n; the cofactor being 1, on-curve implies it, and it
    is checked all the same). A pure function of the point, so kept: a trust list
    is loaded again at every rotation, and each check is a scalar multiplication in
    pure Python (~40 ms)."""
    return bool(_GMALG_CURVE.verify_pk(point))


class Sm2PublicKey:
    """A trusted SM2 key, validated: what the twins verify with.

    - ``point``: the 65-byte uncompressed point ``0x04 || x || y``;
    - ``user_id``: the id the key's signatures are made with (``distid``, or
      :data:`DEFAULT_USER_ID`);
    - ``openssl``: the key as libcrypto holds it (``_sm2_c.OpenSslKey``), or None
      when the compiled twin is not built or this libcrypto has no SM2;
    - ``verifier``: gmalg's verifier of the key.

    Made by :func:`load_public_key` only.
    """

    __slots__ = ("point", "user_id", "openssl", "verifier")

    def __init__(self, point: bytes, user_id: bytes, openssl: object | None) -> None:
        self.point = point
        self.user_id = user_id
        self.openssl = openssl
        self.verifier = gmalg.SM2(pk=point, uid=user_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sm2PublicKey):
            return NotImplemented
        return (self.point, self.user_id) == (other.point, other.user_id)

    def __hash__(self) -> int:
        return hash((self.point, self.user_id))

    def __repr__(self) -> str:
        return f"Sm2PublicKey(point={self.point.hex()!r}, user_id={self.user_id!r})"


def _openssl_key(point: bytes, user_id: bytes) -> object | None:
    """The key as libcrypto holds it (validated there too), or None without OpenSSL SM2."""
    if NO_EXTENSIONS:
        return None
    try:
        from . import _sm2_c  # type: ignore[attr-defined]
    except ImportError:
        return None  # no compiled build: the Python twin is in use
    if not _sm2_c.AVAILABLE:
        return None
    return _sm2_c.OpenSslKey(point, user_id)  # ValueError when libcrypto refuses the point


def load_public_key(x: bytes, y: bytes, user_id: bytes) -> Sm2PublicKey:
    """A trusted key from its coordinates (32 bytes each), validated (WIRE-FORMAT 9):
    both below p, on the curve, not the point at infinity, of order n; refused by
    gmalg or by libcrypto, it raises ValueError with the reason."""
    if len(x) != 32 or len(y) != 32:
        raise ValueError("x and y are 32 bytes each")
    if int.from_bytes(x, "big") >= P or int.from_bytes(y, "big") >= P:
        raise ValueError("x or y is not below the field prime p (not a canonical coordinate)")
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise ValueError(f"the user id is 1 to {MAX_USER_ID} bytes")
    point = b"\x04" + x + y
    if not _gmalg_accepts(point):
        raise ValueError("(x, y) is not a point of the SM2 curve of order n")
    return Sm2PublicKey(point, user_id, _openssl_key(point, user_id))


def verify_with_gmalg(key: Sm2PublicKey, signature: bytes, message: bytes) -> bool:
    """GB/T 32918.2's verification of a 64-byte ``r || s`` over ``message`` (Z and SM3
    included) by gmalg, after the range rule of WIRE-FORMAT 9 (gmalg checks it as
    well). The key was validated at load, so gmalg meets no invalid point; should it
    raise all the same, the signature is not accepted."""
    if len(signature) != 64 or not signature_in_range(signature):
        return False
    try:
        return bool(key.verifier.verify(message, signature[:32], signature[32:]))
    except (GMError, ArithmeticError, ValueError):
        return False
