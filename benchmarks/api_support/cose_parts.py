"""Take a QR code apart into what libsodium (or, for SM2, libcrypto) verifies, for the anchor endpoint.

QR text -> base45 -> zlib -> COSE_Sign1 -> the Sig_structure bytes, the signature and
the issuer's raw public key from the trust list (WIRE-FORMAT 1, 2, 4), with the
readable Python twin's own parsing steps.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fastpath._verify_py import KID, base45_decode, cbor_decode, inflate_bounded, sig_structure


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_parts(qr_text: str, trust_list: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    """(signed bytes, signature, public key) of a WP1/ES1 code signed by a key of ``trust_list``."""
    cose = cbor_decode(inflate_bounded(base45_decode(qr_text.split(":", 1)[1])), allow_cose_tag=True)
    protected, unprotected, payload, signature = cose
    kid = cbor_decode(protected).get(KID) or unprotected.get(KID)
    for key in trust_list["keys"]:
        # Ed25519: the raw 32 bytes; SM2 (WIRE-FORMAT 9): the point 0x04 || x || y
        public_key = b"\x04" + _b64url(key["x"]) + _b64url(key["y"]) if key["kty"] == "EC" else _b64url(key["x"])
        if hashlib.sha256(public_key).digest()[:8] == kid:
            return sig_structure(protected, payload), signature, public_key
    raise LookupError("no key of the trust list signed this code")
