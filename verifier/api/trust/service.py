"""The trust list in force in this worker, reloaded from Redis when the sync job changes it.

What is in force (and served at ``GET /v1/trust-list``) is the upstream's JWK Set of
permit issuers with the Status List signers' keys (``use`` "status", stored by
``verifier status-lists``, :mod:`verifier.index.status_lists`) added to its ``keys``:
one document gives an offline verifier every key it needs, and fastpath keeps the two
uses apart. While the signers' keys are missing from Redis (a FLUSHALL, until the
writer puts them back) the ones this worker had stay in.
"""

from __future__ import annotations

import json
import logging

import fastpath
from verifier.index.status_lists import load_status_jwks
from verifier.index.trust_store import load_trust_list, trust_list_digest
from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["TrustHolder", "with_status_keys"]

log = logging.getLogger("verifier.trust")


def with_status_keys(upstream: bytes, status_keys: bytes | None) -> bytes:
    """The upstream's JWK Set with the keys of ``status_keys`` (a JWK Set) appended; the
    upstream's bytes as they are when there are none, or when either is not a JWK Set
    (then ``TrustList.from_jwks`` judges the upstream's alone)."""
    if not status_keys:
        return upstream
    try:
        document, extra = json.loads(upstream), json.loads(status_keys)
    except (ValueError, UnicodeDecodeError):
        return upstream
    if not (isinstance(document, dict) and isinstance(document.get("keys"), list)
            and isinstance(extra, dict) and isinstance(extra.get("keys"), list)):
        return upstream
    return json.dumps({**document, "keys": document["keys"] + extra["keys"]}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


class TrustHolder:
    __slots__ = ("current", "digest", "refused_digest", "status_keys")

    def __init__(self) -> None:
        self.current: fastpath.TrustList | None = None
        self.digest: str | None = None
        self.refused_digest: str | None = None
        """The digest of the last list refused, so that it is not parsed (and logged) again and again."""
        self.status_keys: bytes | None = None
        """The Status List signers' JWK Set last loaded."""

    async def reload(self, redis: AsyncRedisClient) -> bool:
        """Load the stored list if it changed; True when a new list is now in force. Raises RedisError."""
        data = await load_trust_list(redis)
        if data is None:
            return False
        status_keys = await load_status_jwks(redis)
        return self.install(data, status_keys if status_keys is not None else self.status_keys)

    def install(self, data: bytes, status_keys: bytes | None = None) -> bool:
        merged = with_status_keys(data, status_keys)
        digest = trust_list_digest(merged)
        if digest == self.digest or digest == self.refused_digest:
            return False
        try:
            trust = fastpath.TrustList.from_jwks(merged)
        except fastpath.TrustListError as exc:
            # WIRE-FORMAT 4: a bad list is refused as a whole; the previous stays.
            self.refused_digest = digest
            log.error("trust list %s refused, keeping version %s: %s",
                      digest[:16], self.current.version if self.current else None, exc)
            return False
        self.current, self.digest, self.status_keys = trust, digest, status_keys
        sm2_keys = sum(key.sm2 is not None for key in trust.keys.values())
        # WIRE-FORMAT 9: say what verifies SM2 (OpenSSL, or gmalg ~200 times slower where
        # this libcrypto has none), so that an operator sees a fallback.
        log.info("trust list version %s in force (%d keys, %d of them Status List signers%s)", trust.version,
                 len(trust.keys), len(trust.status_keys),
                 f", {sm2_keys} SM2, verified by {fastpath.SM2_BACKEND}" if sm2_keys else "")
        return True
