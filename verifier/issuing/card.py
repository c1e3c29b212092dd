"""A software social security card: the chip's Ed25519 key pair and certificate.

A physical card's key never leaves its chip; this stand-in holds the key in
memory so that tests, the demo and the load tests can answer challenges
(WIRE-FORMAT 6: the card signs ``b"SSC-AUTH-1" || challenge``).

``SoftwareCard.derive(master_seed, cn)`` makes a card's key deterministic from a
secret master seed and the card number, so that the upstream simulator can
recreate any card's key for a permit without storing one key per card.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any, Final

import nacl.signing
import orjson

from verifier.issuing.keys import KeyFileError, write_file_atomic, b64url_decode, b64url_encode

__all__ = ["CARD_AUTH_DOMAIN", "CHALLENGE_LENGTH", "CARD_KEY_FORMAT", "SoftwareCard"]

CARD_AUTH_DOMAIN: Final = b"SSC-AUTH-1"  # WIRE-FORMAT 6: the domain tag before the challenge
CHALLENGE_LENGTH: Final = 32
CARD_KEY_FORMAT: Final = "permit-verifier/card-key/1"
# HMAC label: a card key derived for one purpose is never a key for another
_DERIVE_LABEL: Final = b"permit-verifier card key v1\x00"


class SoftwareCard:
    """An Ed25519 key pair standing in for a card's chip, and optionally its certificate."""

    __slots__ = ("_signing_key", "certificate")

    def __init__(self, signing_key: nacl.signing.SigningKey, certificate: bytes | None = None) -> None:
        if not isinstance(signing_key, nacl.signing.SigningKey):
            raise TypeError("signing_key is a nacl.signing.SigningKey")
        self._signing_key = signing_key
        self.certificate = certificate
        """The card certificate (raw COSE_Sign1 bytes) the chip holds, once minted."""

    @classmethod
    def generate(cls) -> "SoftwareCard":
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "SoftwareCard":
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @classmethod
    def derive(cls, master_seed: bytes, card_number: str) -> "SoftwareCard":
        """The same card key every time for the same master seed and card number."""
        if not isinstance(master_seed, bytes) or len(master_seed) < 16:
            raise ValueError("a master seed is at least 16 bytes")
        if not isinstance(card_number, str) or not card_number:
            raise ValueError("a card number is a non-empty string")
        seed = hmac.new(master_seed, _DERIVE_LABEL + card_number.encode("utf-8"), hashlib.sha256).digest()
        return cls(nacl.signing.SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        """The card's 32-byte raw Ed25519 public key (``cpk`` in its certificate)."""
        return bytes(self._signing_key.verify_key)

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed. Secret: never log or print it."""
        return bytes(self._signing_key)

    def sign_challenge(self, challenge: bytes) -> bytes:
        """The card's answer: a 64-byte signature of ``b"SSC-AUTH-1" + challenge``.

        Like a card applet, it signs only a 32-byte challenge (WIRE-FORMAT 6).
        """
        if not isinstance(challenge, (bytes, bytearray, memoryview)):
            raise TypeError("a challenge is bytes")
        challenge = bytes(challenge)
        if len(challenge) != CHALLENGE_LENGTH:
            raise ValueError(f"a challenge is {CHALLENGE_LENGTH} bytes, not {len(challenge)}")
        return self._signing_key.sign(CARD_AUTH_DOMAIN + challenge).signature

    # --- a card key file (demos) ------------------------------------------------

    def to_private_jwk(self) -> dict[str, Any]:
        return {
            "format": CARD_KEY_FORMAT,
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url_encode(self.public_key),
            "d": b64url_encode(self.seed),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the card's key as a private JWK, permissions 0600."""
        path = Path(path)
        write_file_atomic(path, orjson.dumps(self.to_private_jwk(), option=orjson.OPT_INDENT_2) + b"\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SoftwareCard":
        try:
            data = orjson.loads(Path(path).read_bytes())
        except orjson.JSONDecodeError as exc:
            raise KeyFileError(f"{path}: not JSON") from exc
        if not isinstance(data, dict) or data.get("format") != CARD_KEY_FORMAT:
            raise KeyFileError(f"{path}: format is not {CARD_KEY_FORMAT!r}")
        try:
            card = cls.from_seed(b64url_decode(data.get("d")))  # type: ignore[arg-type]
        except ValueError as exc:
            raise KeyFileError(f"{path}: d is not a 32-byte seed in unpadded base64url") from exc
        if data.get("x") != b64url_encode(card.public_key):
            raise KeyFileError(f"{path}: x does not match the private key d")
        return card

    def __repr__(self) -> str:  # never the seed
        return f"SoftwareCard(public_key={b64url_encode(self.public_key)!r})"
