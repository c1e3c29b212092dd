"""The audit's checkpoint keys, as a JWK Set."""

from __future__ import annotations

from typing import Any

import msgspec


class AuditKeysOut(msgspec.Struct):
    keys: list[dict[str, Any]]
    """Ed25519 public keys (RFC 8037 OKP JWKs) that sign the audit's checkpoints, one per host, by ``kid``."""
