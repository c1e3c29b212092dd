"""The trust list in force in this worker, reloaded from Redis when the sync job changes it."""

from __future__ import annotations

import logging

import fastpath
from verifier.index.trust_store import load_trust_list, trust_list_digest
from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["TrustHolder"]

log = logging.getLogger("verifier.trust")


class TrustHolder:
    __slots__ = ("current", "digest", "refused_digest")

    def __init__(self) -> None:
        self.current: fastpath.TrustList | None = None
        self.digest: str | None = None
        self.refused_digest: str | None = None
        """The digest of the last list refused, so that it is not parsed (and logged) again and again."""

    async def reload(self, redis: AsyncRedisClient) -> bool:
        """Load the stored list if it changed; True when a new list is now in force. Raises RedisError."""
        data = await load_trust_list(redis)
        if data is None:
            return False
        return self.install(data)

    def install(self, data: bytes) -> bool:
        digest = trust_list_digest(data)
        if digest == self.digest or digest == self.refused_digest:
            return False
        try:
            trust = fastpath.TrustList.from_jwks(data)
        except fastpath.TrustListError as exc:
            # WIRE-FORMAT 4: a bad list is refused as a whole; the previous stays.
            self.refused_digest = digest
            log.error("trust list %s refused, keeping version %s: %s",
                      digest[:16], self.current.version if self.current else None, exc)
            return False
        self.current, self.digest = trust, digest
        sm2_keys = sum(key.sm2 is not None for key in trust.keys.values())
        # WIRE-FORMAT 9: say what verifies SM2 (OpenSSL, or gmalg ~200 times slower where
        # this libcrypto has none), so that an operator sees a fallback.
        log.info("trust list version %s in force (%d keys%s)", trust.version, len(trust.keys),
                 f", {sm2_keys} SM2, verified by {fastpath.SM2_BACKEND}" if sm2_keys else "")
        return True
