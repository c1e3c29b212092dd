# Stub of fastpath/_sodium_c.pyx (C API in _sodium_c.pxd).

LIBSODIUM_PATH: str
"""The PyNaCl shared object whose libsodium this module calls."""

def verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` (GIL released)."""
