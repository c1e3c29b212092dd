"""Request and response bodies of card reads (WIRE-FORMAT 6). Bytes travel as standard base64."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from verifier.api.openapi import Terminal


class ChallengeOut(msgspec.Struct):
    challenge: bytes
    """32 random bytes (base64) for the card to sign, once, within 60 s."""
    expires_at: str
    """RFC 3339."""


# Standard base64 (RFC 4648 section 4, padded) as a pattern, so that the schema itself
# says which texts decode (contentEncoding alone is only an annotation).
_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _base64(max_bytes: int, description: str) -> Any:
    return Annotated[str, Meta(pattern=_BASE64, max_length=4 * ((max_bytes + 2) // 3), description=description)]


class CardRequest(msgspec.Struct, forbid_unknown_fields=True):
    certificate: _base64(4096, "The card certificate (COSE_Sign1), base64.")  # type: ignore[valid-type]
    challenge: _base64(64, "The challenge the card signed, base64.")  # type: ignore[valid-type]
    signature: _base64(128, "The card's Ed25519 signature, base64.")  # type: ignore[valid-type]
    terminal: Terminal
    receipt: bool = False
