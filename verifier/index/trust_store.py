"""The trust list in force, kept in Redis: the sync job writes it, the API reads it.

The sync job fetches the upstream's JWK Set (WIRE-FORMAT 4) and calls
:func:`save_trust_list_sync` with the bytes exactly as received; every API worker loads
them at start, and again when :data:`TRUST_CHANNEL` says they changed (or, as a
safety net, when its periodic check sees another digest). A list that
``fastpath.TrustList.from_jwks`` refuses is never swapped in by the API: the
previous list stays in force. ``save_trust_list_sync`` refuses it too, so a bad list from
the upstream does not even reach Redis.
"""

from __future__ import annotations

import hashlib

import fastpath

from verifier.lib.redis_client import AsyncRedisClient, SyncRedisClient

__all__ = [
    "TRUST_CHANNEL",
    "TRUST_KEY",
    "load_trust_list",
    "save_trust_list_sync",
    "trust_list_digest",
]

TRUST_KEY = "pv:trust:jwks"
"""The JWK Set as received from the upstream (bytes)."""
TRUST_CHANNEL = "pv:trust:changed"
"""Pub/sub channel: the message is the new list's digest (hex SHA-256 of the bytes)."""


def trust_list_digest(jwks_bytes: bytes) -> str:
    return hashlib.sha256(jwks_bytes).hexdigest()


def _checked(jwks_bytes: bytes | str) -> bytes:
    data = jwks_bytes.encode() if isinstance(jwks_bytes, str) else bytes(jwks_bytes)
    fastpath.TrustList.from_jwks(data)  # WIRE-FORMAT 4: a bad list is refused as a whole
    return data


def save_trust_list_sync(redis: SyncRedisClient, jwks_bytes: bytes | str) -> bool:
    """Store a new trust list and tell the API workers; False when it is the one already
    stored. A sync client: the writer is the sync job (and the tests, with theirs).

    Raises ``fastpath.TrustListError`` for a list that would be refused at load.
    """
    data = _checked(jwks_bytes)
    previous = redis.set(TRUST_KEY, data, get=True)
    if previous == data:
        return False
    redis.publish(TRUST_CHANNEL, trust_list_digest(data))
    return True


async def load_trust_list(redis: AsyncRedisClient) -> bytes | None:
    """The stored JWK Set, or None when the sync job has not stored one yet."""
    data = await redis.get(TRUST_KEY)
    return bytes(data) if data is not None else None
