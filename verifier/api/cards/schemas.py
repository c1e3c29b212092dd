"""Request and response bodies of card reads (WIRE-FORMAT 6). Bytes travel as standard base64."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from verifier.api.openapi import Terminal


class ChallengeOut(msgspec.Struct):
    challenge: bytes
    """32 random bytes (base64) for the card to sign, once, within 60 s."""
    expires_at: str
    """RFC 3339."""


class CardRequest(msgspec.Struct, forbid_unknown_fields=True):
    certificate: Annotated[bytes, Meta(max_length=4096, description="The card certificate (COSE_Sign1), base64.")]
    challenge: Annotated[bytes, Meta(max_length=64, description="The challenge the card signed, base64.")]
    signature: Annotated[bytes, Meta(max_length=128, description="The card's Ed25519 signature, base64.")]
    terminal: Terminal
    receipt: bool = False
