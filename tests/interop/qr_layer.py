"""The QR layer around a foreign library's COSE bytes, written without our issuing code
(except base45, checked against RFC 9285's examples in the issuing tests)."""

from __future__ import annotations

import zlib

from verifier.issuing import base45_encode

BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def qr_text(prefix: str, cose: bytes) -> str:
    """Their COSE bytes as a QR text: zlib (the standard library's, default level) + base45."""
    return prefix + base45_encode(zlib.compress(cose))


def cose_of(code: str) -> bytes:
    """The COSE bytes of a QR text, unpacked by hand (RFC 9285, then zlib)."""
    values = [BASE45_ALPHABET.index(c) for c in code[4:]]
    raw = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i:i + 3]
        raw += sum(v * 45**k for k, v in enumerate(chunk)).to_bytes(2 if len(chunk) == 3 else 1, "big")
    return zlib.decompress(bytes(raw))
