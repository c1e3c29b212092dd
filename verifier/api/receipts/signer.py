"""Signed receipts: evidence, for a case file, of what the service answered.

The service's own Ed25519 key (not an issuer key) is generated at first start and
kept in Redis (``pv:receipt-key``, set once with SET NX so that every worker and
every host signs with the same key); it is never written to the repository or a
log. Its public key is served at ``GET /v1/receipt-keys`` as a JWK Set.

What is signed: ``b"PV-RECEIPT-1" || SHA-256(canonical verdict)``, where the
canonical verdict is the verdict object as answered, without its ``receipt``
member, serialised as JSON with keys sorted and no whitespace (UTF-8, as RFC 8785
for the values the verdict holds: strings, integers, booleans, null and ``lag_s``
rounded to milliseconds). :func:`verify_receipt` is the check a case file uses.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
import nacl.exceptions
import nacl.signing
import orjson

from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["RECEIPT_KEY", "Receipt", "ReceiptCheck", "ReceiptSigner", "canonical_verdict", "check_receipt",
           "verify_receipt"]

RECEIPT_KEY = "pv:receipt-key"
_CONTEXT = b"PV-RECEIPT-1"


class Receipt(msgspec.Struct, frozen=True):
    """A signature by the service over the digest of the verdict it is attached to."""

    alg: str
    """Always ``EdDSA`` (Ed25519)."""
    kid: str
    """base64url of the first 8 bytes of SHA-256 of the service's public key (see /v1/receipt-keys)."""
    digest: str
    """base64url of SHA-256 over the canonical verdict (without ``receipt``)."""
    signature: str
    """base64url of the Ed25519 signature over ``"PV-RECEIPT-1" || digest``."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_verdict(verdict: Mapping[str, Any]) -> bytes:
    """The bytes a receipt's digest covers."""
    return orjson.dumps({k: v for k, v in verdict.items() if k != "receipt"}, option=orjson.OPT_SORT_KEYS)


class ReceiptSigner:
    __slots__ = ("_key", "public_key", "kid")

    def __init__(self, seed: bytes) -> None:
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.kid = _b64url(hashlib.sha256(self.public_key).digest()[:8])

    @classmethod
    async def load_or_create(cls, redis: AsyncRedisClient, current: "ReceiptSigner | None" = None) -> "ReceiptSigner":
        """The service's receipt key, made by whichever worker starts first.

        With ``current`` (the key this worker signs with) a Redis that lost the key
        (FLUSHALL, a new server) gets it back, so that every worker keeps signing with
        the one key published at /v1/receipt-keys.
        """
        seed = current._key.encode() if current is not None else nacl.signing.SigningKey.generate().encode()
        await redis.set(RECEIPT_KEY, seed, nx=True)
        stored = await redis.get(RECEIPT_KEY)
        if not isinstance(stored, bytes) or len(stored) != 32:
            raise RuntimeError(f"{RECEIPT_KEY} in Redis does not hold a 32-byte Ed25519 seed")
        if current is not None and stored == seed:
            return current
        return cls(stored)

    def sign(self, verdict: Mapping[str, Any]) -> Receipt:
        digest = hashlib.sha256(canonical_verdict(verdict)).digest()
        signature = self._key.sign(_CONTEXT + digest).signature
        return Receipt(alg="EdDSA", kid=self.kid, digest=_b64url(digest), signature=_b64url(signature))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": _b64url(self.public_key),
            "kid": self.kid, "alg": "EdDSA", "use": "sig",
        }]}


class ReceiptCheck(msgspec.Struct, frozen=True):
    """What checking a receipt found: ``ok`` only when the signature holds over this very verdict."""

    ok: bool
    reason: str
    """Why not (or "the signature holds"), in words."""
    kid: str | None = None
    """The receipt's key id, when it names one."""


def check_receipt(verdict: Mapping[str, Any], jwks: Mapping[str, Any]) -> ReceiptCheck:
    """Check ``verdict["receipt"]`` against the receipt keys ``jwks`` (``GET /v1/receipt-keys``)."""
    receipt = verdict.get("receipt") if isinstance(verdict, Mapping) else None
    if not isinstance(receipt, Mapping):
        return ReceiptCheck(False, "the verdict carries no receipt")
    kid = receipt.get("kid")
    kid_text = kid if isinstance(kid, str) else None
    if receipt.get("alg") != "EdDSA":
        return ReceiptCheck(False, f"the receipt's alg is {receipt.get('alg')!r}, not EdDSA", kid_text)
    try:
        digest = hashlib.sha256(canonical_verdict(verdict)).digest()
    except (TypeError, orjson.JSONEncodeError):
        return ReceiptCheck(False, "the verdict is not plain JSON", kid_text)
    if _b64url(digest) != receipt.get("digest"):
        return ReceiptCheck(False, "the verdict differs from the one signed (its digest does not match)", kid_text)
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    key = next((k for k in keys or () if isinstance(k, Mapping) and k.get("kid") == kid), None)
    if key is None:
        return ReceiptCheck(False, f"no receipt key has the receipt's kid {kid!r}", kid_text)
    try:
        verify_key = nacl.signing.VerifyKey(_b64url_decode(key["x"]))
        verify_key.verify(_CONTEXT + digest, _b64url_decode(receipt["signature"]))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError, KeyError):  # nacl's ValueError too
        return ReceiptCheck(False, "the signature does not verify", kid_text)
    return ReceiptCheck(True, "the signature holds", kid_text)


def verify_receipt(verdict: Mapping[str, Any], jwks: Mapping[str, Any]) -> bool:
    """True when ``verdict["receipt"]`` is a valid receipt over this very verdict by a key of ``jwks``."""
    return check_receipt(verdict, jwks).ok
