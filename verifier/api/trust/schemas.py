"""The trust list as served to offline verifiers."""

from __future__ import annotations

from typing import Any

import msgspec


class TrustListOut(msgspec.Struct):
    """The JWK Set in force (WIRE-FORMAT 4), with its version; a valid JWK Set (extra members are allowed)."""

    version: str
    """First 16 hex digits of SHA-256 over the canonical key list: changes when the keys change."""
    keys: list[dict[str, Any]]
