"""The service's receipt keys, as a JWK Set."""

from __future__ import annotations

from typing import Any

import msgspec


class ReceiptKeysOut(msgspec.Struct):
    keys: list[dict[str, Any]]
    """Ed25519 public keys (RFC 8037 OKP JWKs) that sign verdict receipts, by ``kid``."""
