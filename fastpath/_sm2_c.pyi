# Stub of fastpath/_sm2_c.pyx (C API in _sm2_c.pxd).

AVAILABLE: bool
"""True when this process's libcrypto (OpenSSL 3) has SM2 and SM3."""
UNAVAILABLE_REASON: str | None
LIBCRYPTO_PATH: str | None
OPENSSL_VERSION: str | None

class OpenSslKey:
    """A validated SM2 public key as libcrypto holds it; ValueError for a point it refuses."""

    point: bytes
    user_id: bytes
    def __init__(self, point: bytes, user_id: bytes) -> None: ...

def verify(key: OpenSslKey, signature: bytes, message: bytes) -> bool:
    """True when the 64-byte r || s verifies (range rule, DER, libcrypto; GIL released)."""

def bare_verify(key: OpenSslKey, der_signature: bytes, message: bytes) -> bool:
    """OpenSSL's bare verify of a ready DER signature (the benchmarks' anchor)."""

def der_signature(signature: bytes) -> bytes:
    """The DER ECDSA-Sig-Value of a 64-byte r || s."""
