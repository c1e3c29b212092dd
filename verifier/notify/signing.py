"""Standard Webhooks signatures (standardwebhooks.com), exactly as the spec writes them.

- The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``: the id, the
  attempt's integer Unix time and the body bytes as sent.
- ``v1,`` + base64 HMAC-SHA256 of it under the subscription's secret: ``whsec_`` +
  base64 of 32 random bytes (the spec: 24 to 64 bytes).
- ``v1a,`` + base64 Ed25519 signature of it (libsodium, through PyNaCl) under the
  subscription's own key pair: ``whsk_`` + base64 of the 32-byte seed (kept by the
  service), ``whpk_`` + base64 of the public key (shown to the subscriber).
- ``webhook-signature`` is the space-separated list of every signature: during a
  secret rotation the old secret signs too, so receivers switch without a gap.

Tested on the spec's published vectors (tests/notify/test_signing.py) and against
the ``standardwebhooks`` package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

import nacl.exceptions
import nacl.signing

__all__ = [
    "SECRET_PREFIX",
    "SignatureError",
    "Signer",
    "new_secret",
    "new_signing_key",
    "public_key_of",
    "sign_v1",
    "sign_v1a",
    "verify",
]

SECRET_PREFIX = "whsec_"
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 32
TOLERANCE_S = 300
"""How far a receiver may trust a timestamp from its own clock (the spec's 5 minutes)."""


class SignatureError(ValueError):
    """Headers missing or malformed, a timestamp out of tolerance, or no signature matches."""


def _unprefixed(text: str, prefix: str) -> bytes:
    raw = text[len(prefix):] if text.startswith(prefix) else text
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_signing_key() -> str:
    return SIGNING_KEY_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def public_key_of(signing_key: str) -> str:
    seed = _unprefixed(signing_key, SIGNING_KEY_PREFIX)
    verify_key = nacl.signing.SigningKey(seed).verify_key
    return PUBLIC_KEY_PREFIX + base64.b64encode(bytes(verify_key)).decode()


def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.'")  # the spec: ids are not user-controlled
    return b"%s.%d.%s" % (msg_id.encode(), timestamp, body)


def sign_v1(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(_unprefixed(secret, SECRET_PREFIX), _content(msg_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_v1a(signing_key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = nacl.signing.SigningKey(_unprefixed(signing_key, SIGNING_KEY_PREFIX))
    return "v1a," + base64.b64encode(key.sign(_content(msg_id, timestamp, body)).signature).decode()


class Signer:
    """The keys of one subscription: its secret(s) and its Ed25519 key, loaded once."""

    __slots__ = ("_secrets", "_key")

    def __init__(self, secrets_in_force: Sequence[str], signing_key: str | None) -> None:
        self._secrets = [_unprefixed(s, SECRET_PREFIX) for s in secrets_in_force]
        self._key = (nacl.signing.SigningKey(_unprefixed(signing_key, SIGNING_KEY_PREFIX))
                     if signing_key else None)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers of one attempt."""
        content = _content(msg_id, timestamp, body)
        signatures = ["v1," + base64.b64encode(hmac.new(s, content, hashlib.sha256).digest()).decode()
                      for s in self._secrets]
        if self._key is not None:
            signatures.append("v1a," + base64.b64encode(self._key.sign(content).signature).decode())
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures)}


def verify(body: bytes, headers: Mapping[str, str], *, secret: str | None = None, public_key: str | None = None,
           now: float | None = None, tolerance_s: int = TOLERANCE_S) -> list[str]:
    """A receiver's check (the demo's receiver uses it): the versions that matched
    (``["v1"]``, ``["v1", "v1a"]``), or :class:`SignatureError`. ``now`` None: no
    timestamp check."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signature = (lowered.get(n) for n in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signature):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if now is not None and abs(now - timestamp) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    content = _content(msg_id, timestamp, body)
    expected = (hmac.new(_unprefixed(secret, SECRET_PREFIX), content, hashlib.sha256).digest()
                if secret else None)
    verify_key = nacl.signing.VerifyKey(_unprefixed(public_key, PUBLIC_KEY_PREFIX)) if public_key else None
    matched: list[str] = []
    for item in signature.split(" "):
        version, _, value = item.partition(",")
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        if version == "v1" and expected is not None and hmac.compare_digest(raw, expected):
            matched.append("v1")
        elif version == "v1a" and verify_key is not None:
            try:
                verify_key.verify(content, raw)
            except (nacl.exceptions.BadSignatureError, ValueError):
                continue
            matched.append("v1a")
    if not matched:
        raise SignatureError("no signature matches")
    return sorted(set(matched))
