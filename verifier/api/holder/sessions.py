"""Holder tokens: what a signed-in holder's e-card platform sends as ``X-Holder-Token``.

A token is ``pvh_`` and 32 random bytes (base64url), opaque, shown once; Redis keeps
only its SHA-256 (``pv:holder:session:<digest>``: a hash of the permit number, the
platform key id and the expiry), so a copy of Redis lets nobody act as a holder. It
reads one permit (the one whose ES1 code signed in) and works only with the platform
key that created it: another platform key holding a copy of it gets the answer of an
unknown token. It lasts ``settings.holder_session_ttl_s`` (10 minutes by default);
``DELETE /v1/holder/session`` ends it at once. The record is kept ``EXPIRED_MEMORY_S``
past its expiry so that an expired token is answered "expired" rather than "unknown".

Sessions are short-lived state like card challenges: they live in the index's Redis
(a flushed Redis signs holders out; they sign in again with a fresh code).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["EXPIRED_MEMORY_S", "HolderSession", "HolderSessions", "SessionRefused"]

SESSION_PREFIX = "pv:holder:session:"
EXPIRED_MEMORY_S = 3600
_TOKEN_RE = re.compile(r"pvh_[A-Za-z0-9_-]{43}")

Refusal = Literal["missing", "malformed", "unknown", "expired"]


class SessionRefused(Exception):
    """The holder token does not open a session: missing, malformed, unknown (or revoked,
    or another platform key's), expired."""

    def __init__(self, why: Refusal) -> None:
        super().__init__(why)
        self.why: Refusal = why


@dataclass(frozen=True, slots=True)
class HolderSession:
    permit_number: str
    key_id: str
    expires_at: float
    digest: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class HolderSessions:
    __slots__ = ("_redis", "ttl_s")

    def __init__(self, redis: AsyncRedisClient, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("a holder session needs a positive lifetime")
        self._redis = redis
        self.ttl_s = ttl_s

    async def create(self, permit_number: str, key_id: str, now: float) -> tuple[str, float]:
        """A new token for ``permit_number``, bound to ``key_id``; returns it and its expiry. Raises RedisError."""
        token = "pvh_" + secrets.token_urlsafe(32)
        expires_at = now + self.ttl_s
        key = SESSION_PREFIX + _digest(token)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={"pn": permit_number, "key": key_id, "exp": repr(expires_at)})
            pipe.pexpire(key, int((self.ttl_s + EXPIRED_MEMORY_S) * 1000))
            await pipe.execute()
        return token, expires_at

    async def resolve(self, token: str | None, key_id: str, now: float) -> HolderSession:
        """The session behind ``token`` for the platform key ``key_id``; raises SessionRefused, or RedisError."""
        if not token:
            raise SessionRefused("missing")
        if _TOKEN_RE.fullmatch(token) is None:
            raise SessionRefused("malformed")
        digest = _digest(token)
        permit_number, owner, expires = await self._redis.hmget(SESSION_PREFIX + digest, "pn", "key", "exp")
        if permit_number is None or owner is None or expires is None:
            raise SessionRefused("unknown")
        if not hmac.compare_digest(_text(owner), key_id):
            raise SessionRefused("unknown")  # another platform key's token: as if there were none
        expires_at = float(_text(expires))
        if now >= expires_at:
            raise SessionRefused("expired")
        return HolderSession(_text(permit_number), key_id, expires_at, digest)

    async def end(self, session: HolderSession) -> None:
        """Sign out: the token stops working at once. Raises RedisError."""
        await self._redis.delete(SESSION_PREFIX + session.digest)
