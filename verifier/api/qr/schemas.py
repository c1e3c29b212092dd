"""Request and response bodies of QR verification."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from verifier.api.openapi import Terminal
from verifier.api.verdicts.schemas import VerdictOut

# A QR text of WIRE-FORMAT 1 is at most 4 + 6200 characters; longer bodies are not QR codes.
QrText = Annotated[str, Meta(max_length=8192, description="The scanned text, `WP1:...` or `ES1:...`.")]
MAX_BATCH = 1000


class QrRequest(msgspec.Struct, forbid_unknown_fields=True):
    qr: QrText
    terminal: Terminal
    receipt: bool = False
    """Ask for a signed receipt of the verdict."""


class QrBatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    codes: Annotated[list[QrText], Meta(min_length=1, max_length=MAX_BATCH)]
    terminal: Terminal
    receipt: bool = False


class QrBatchResponse(msgspec.Struct):
    verdicts: list[VerdictOut]
    """One verdict per code, in the order of the request."""
