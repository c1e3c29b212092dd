"""Card challenges (WIRE-FORMAT 6): 32 random bytes, usable once, for 60 s.

Stored as ``pv:challenge:<hex>`` -> the key id that asked for it, with a 60 s
expiry; consumed with GETDEL, so two workers can never both accept the same one.
A challenge is bound to the API key that asked for it (stricter than the spec: a
challenge leaked to another caller is useless to it).
"""

from __future__ import annotations

import secrets
import time

from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["CHALLENGE_TTL_S", "ChallengeStore"]

CHALLENGE_TTL_S = 60
CHALLENGE_BYTES = 32


class ChallengeStore:
    __slots__ = ("_redis",)

    def __init__(self, redis: AsyncRedisClient) -> None:
        self._redis = redis

    async def issue(self, key_id: str) -> tuple[bytes, float]:
        """A fresh challenge and when it expires (epoch s). Raises RedisError."""
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        expires_at = time.time() + CHALLENGE_TTL_S
        await self._redis.set("pv:challenge:" + challenge.hex(), key_id, ex=CHALLENGE_TTL_S)
        return challenge, expires_at

    async def consume(self, challenge: bytes, key_id: str) -> bool:
        """True once for a challenge this key was given and that has not expired. Raises RedisError."""
        if len(challenge) != CHALLENGE_BYTES:
            return False
        owner = await self._redis.getdel("pv:challenge:" + challenge.hex())
        if owner is None:
            return False
        return (owner.decode() if isinstance(owner, bytes) else owner) == key_id
