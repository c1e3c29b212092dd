"""SM2-with-SM3 signing keys of the issuing side (WIRE-FORMAT 9), through OpenSSL 3's libcrypto.

Signing handles a private key, so it goes where the arithmetic is constant-time:
OpenSSL's SM2 (its scalar multiplications with a secret scalar use a Montgomery
ladder, its nonces come from its own DRBG, the inverse of 1 + d is taken in
constant time). The binding is ctypes over the libcrypto that Python's ``ssl``
module loads (the same one the compiled fastpath verifies with, found the same
way), so the issuing side needs no compiler and no OpenSSL headers. Pure-Python
SM2 (gmalg, which the Python twin verifies with) is not constant-time and never
signs here.

A key is its private scalar ``d`` in [1, n - 2] (GB/T 32918.1 6.1) and its user
id; the public point is derived by libcrypto. ``from_seed`` makes ``d`` from a
32-byte seed (the simulator's deterministic keys): SHA-512 of a label and the
seed, reduced mod n - 2 (a bias of 2**-256, nothing).
"""

from __future__ import annotations

import ctypes
import hashlib
import secrets
from typing import Any, Final

from fastpath._sm2 import DEFAULT_USER_ID, LIBCRYPTO_SONAME, MAX_USER_ID, N

__all__ = ["Sm2SigningKey", "Sm2Unavailable", "sm2_signing_available"]

_SEED_LABEL: Final = b"permit-verifier sm2 issuer key v1\x00"
# SEC 1 ECPrivateKey { version 1, privateKey OCTET STRING (32), parameters [0] sm2p256v1 }
# without the public key: libcrypto derives it from d (d2i_ECPrivateKey).
_SEC1_PREFIX: Final = bytes.fromhex("3031020101" "0420")
_SEC1_SUFFIX: Final = bytes.fromhex("a00a06082a811ccf5501822d")
_EVP_PKEY_EC: Final = 408  # NID_X9_62_id_ecPublicKey: the key type d2i_PrivateKey decodes
_OSSL_PARAM_OCTET_STRING: Final = 5


class Sm2Unavailable(RuntimeError):
    """This process's libcrypto cannot sign with SM2 (not OpenSSL 3, or built without SM2)."""


class _OsslParam(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("data_type", ctypes.c_uint), ("data", ctypes.c_void_p),
                ("data_size", ctypes.c_size_t), ("return_size", ctypes.c_size_t)]


class _LibCrypto:
    """The few libcrypto functions signing needs, declared here (no headers)."""

    def __init__(self) -> None:
        try:
            import _ssl  # noqa: F401  (the libcrypto Python's ssl module uses, as fastpath/_sm2_c.pyx)
        except ImportError:
            pass
        try:
            lib = ctypes.CDLL(LIBCRYPTO_SONAME)
        except OSError as exc:
            raise Sm2Unavailable(f"cannot load {LIBCRYPTO_SONAME}: {exc}") from None
        p, i, sz, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p
        self._declare(lib, "OpenSSL_version_num", ctypes.c_ulong, [])
        self._declare(lib, "d2i_PrivateKey", p, [i, p, ctypes.POINTER(c), ctypes.c_long])
        self._declare(lib, "i2d_PUBKEY", i, [p, ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))])
        self._declare(lib, "EVP_PKEY_is_a", i, [p, c])
        self._declare(lib, "EVP_PKEY_free", None, [p])
        self._declare(lib, "EVP_MD_fetch", p, [p, c, c])
        self._declare(lib, "EVP_MD_CTX_new", p, [])
        self._declare(lib, "EVP_MD_CTX_free", None, [p])
        self._declare(lib, "EVP_DigestSignInit", i, [p, ctypes.POINTER(p), p, p, p])
        self._declare(lib, "EVP_PKEY_CTX_set_params", i, [p, ctypes.POINTER(_OsslParam)])
        self._declare(lib, "EVP_DigestSign", i, [p, c, ctypes.POINTER(sz), c, sz])
        self._declare(lib, "ERR_clear_error", None, [])
        self._declare(lib, "CRYPTO_free", None, [p, c, i])
        if lib.OpenSSL_version_num() < 0x30000000:
            raise Sm2Unavailable(f"{LIBCRYPTO_SONAME} is older than OpenSSL 3")
        self.sm3 = lib.EVP_MD_fetch(None, b"SM3", None)
        if not self.sm3:
            lib.ERR_clear_error()
            raise Sm2Unavailable(f"{LIBCRYPTO_SONAME} has no SM3 (OpenSSL built without it)")
        self.lib = lib

    @staticmethod
    def _declare(lib: Any, name: str, restype: Any, argtypes: list[Any]) -> None:
        try:
            function = getattr(lib, name)
        except AttributeError:
            raise Sm2Unavailable(f"{LIBCRYPTO_SONAME} does not export {name} (not OpenSSL 3?)") from None
        function.restype = restype
        function.argtypes = argtypes


_libcrypto: _LibCrypto | None = None
_unavailable: str | None = None


def _lib() -> _LibCrypto:
    """libcrypto, loaded at first use (importing the issuing side never needs it)."""
    global _libcrypto, _unavailable
    if _libcrypto is None:
        if _unavailable is not None:
            raise Sm2Unavailable(_unavailable)
        try:
            _libcrypto = _LibCrypto()
        except Sm2Unavailable as exc:
            _unavailable = str(exc)
            raise
    return _libcrypto


def sm2_signing_available() -> str | None:
    """None when SM2 signing works in this process, else why not."""
    try:
        _lib()
    except Sm2Unavailable as exc:
        return str(exc)
    return None


def _der_integer(data: bytes, at: int) -> tuple[int, int]:
    """A DER INTEGER at ``data[at]``: (value, the offset after it)."""
    if data[at] != 0x02 or data[at + 1] > 33:
        raise ValueError("not a DER INTEGER of at most 33 bytes")
    length = data[at + 1]
    return int.from_bytes(data[at + 2:at + 2 + length], "big"), at + 2 + length


def _raw_signature(der: bytes) -> bytes:
    """libcrypto's DER ECDSA-Sig-Value to the wire's 64-byte r || s (WIRE-FORMAT 9)."""
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise ValueError("libcrypto's SM2 signature is not a DER SEQUENCE")
    r, at = _der_integer(der, 2)
    s, at = _der_integer(der, at)
    if at != len(der) or not (0 < r < N and 0 < s < N):
        raise ValueError("libcrypto's SM2 signature is out of range")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class Sm2SigningKey:
    """An SM2 private key held by libcrypto, with its user id. Secret: never log ``d``."""

    __slots__ = ("_pkey", "_scalar", "_user_id", "_point")

    def __init__(self, private_scalar: bytes, user_id: bytes = DEFAULT_USER_ID) -> None:
        if not isinstance(private_scalar, bytes) or len(private_scalar) != 32:
            raise ValueError("an SM2 private key is a 32-byte scalar")
        if not 1 <= int.from_bytes(private_scalar, "big") <= N - 2:
            raise ValueError("an SM2 private key is in [1, n - 2] (GB/T 32918.1)")
        if not isinstance(user_id, bytes) or not 1 <= len(user_id) <= MAX_USER_ID:
            raise ValueError(f"an SM2 user id is 1 to {MAX_USER_ID} bytes")
        crypto = _lib()
        der = _SEC1_PREFIX + private_scalar + _SEC1_SUFFIX
        buffer = ctypes.c_char_p(der)
        pkey = crypto.lib.d2i_PrivateKey(_EVP_PKEY_EC, None, ctypes.byref(buffer), len(der))
        if not pkey:
            crypto.lib.ERR_clear_error()
            raise Sm2Unavailable("libcrypto does not take an SM2 private key (built without SM2?)")
        self._pkey = ctypes.c_void_p(pkey)
        if crypto.lib.EVP_PKEY_is_a(self._pkey, b"SM2") != 1:
            raise Sm2Unavailable("libcrypto takes the key, but not as an SM2 key (built without SM2?)")
        self._scalar = private_scalar
        self._user_id = user_id
        self._point = self._public_point()

    def __del__(self) -> None:
        pkey = getattr(self, "_pkey", None)
        if pkey and _libcrypto is not None:
            _libcrypto.lib.EVP_PKEY_free(pkey)

    @classmethod
    def generate(cls, user_id: bytes = DEFAULT_USER_ID) -> "Sm2SigningKey":
        """A fresh key: d uniform in [1, n - 2] from the OS's CSPRNG."""
        d = secrets.randbelow(N - 2) + 1
        return cls(d.to_bytes(32, "big"), user_id)

    @classmethod
    def from_seed(cls, seed: bytes, user_id: bytes = DEFAULT_USER_ID) -> "Sm2SigningKey":
        """The key for a 32-byte seed: the same seed gives the same key (simulator, tests)."""
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("a seed is 32 bytes")
        d = int.from_bytes(hashlib.sha512(_SEED_LABEL + seed).digest(), "big") % (N - 2) + 1
        return cls(d.to_bytes(32, "big"), user_id)

    def _public_point(self) -> bytes:
        crypto = _lib()
        out = ctypes.POINTER(ctypes.c_ubyte)()
        length = crypto.lib.i2d_PUBKEY(self._pkey, ctypes.byref(out))
        if length <= 0:
            crypto.lib.ERR_clear_error()
            raise RuntimeError("libcrypto could not encode the SM2 public key")
        try:
            spki = ctypes.string_at(out, length)
        finally:
            crypto.lib.CRYPTO_free(out, b"verifier/issuing/sm2.py", 0)
        return spki[-65:]  # the BIT STRING's content: 0x04 || x || y

    @property
    def private_scalar(self) -> bytes:
        """d, 32 bytes big-endian. Secret: never log or print it."""
        return self._scalar

    @property
    def public_point(self) -> bytes:
        """The 65-byte uncompressed public point 0x04 || x || y."""
        return self._point

    @property
    def user_id(self) -> bytes:
        return self._user_id

    def sign(self, message: bytes) -> bytes:
        """The 64-byte r || s of SM2 with SM3 over Z (user id, key) and ``message``."""
        crypto = _lib()
        lib = crypto.lib
        md_ctx = lib.EVP_MD_CTX_new()
        if not md_ctx:
            raise MemoryError("EVP_MD_CTX_new")
        try:
            pkey_ctx = ctypes.c_void_p()
            if lib.EVP_DigestSignInit(md_ctx, ctypes.byref(pkey_ctx), crypto.sm3, None, self._pkey) != 1:
                raise RuntimeError("EVP_DigestSignInit refused the SM2 key")
            # After the init: OpenSSL 3.0 refuses a distid passed to EVP_DigestSignInit_ex.
            user_id = ctypes.create_string_buffer(self._user_id, len(self._user_id))
            params = (_OsslParam * 2)(
                _OsslParam(b"distid", _OSSL_PARAM_OCTET_STRING, ctypes.cast(user_id, ctypes.c_void_p),
                           len(self._user_id), 0),
                _OsslParam(None, 0, None, 0, 0))
            if lib.EVP_PKEY_CTX_set_params(pkey_ctx, params) != 1:
                raise RuntimeError("libcrypto refused the SM2 user id")
            signature = ctypes.create_string_buffer(80)
            length = ctypes.c_size_t(len(signature))
            if lib.EVP_DigestSign(md_ctx, signature, ctypes.byref(length), message, len(message)) != 1:
                raise RuntimeError("EVP_DigestSign failed")
            return _raw_signature(signature.raw[:length.value])
        except RuntimeError:
            lib.ERR_clear_error()
            raise
        finally:
            lib.EVP_MD_CTX_free(md_ctx)

    def __repr__(self) -> str:  # never d
        return f"Sm2SigningKey(public_point={self._point.hex()!r}, user_id={self._user_id!r})"
