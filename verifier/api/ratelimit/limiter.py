"""Per-key rate limits, shared by every worker through Redis: a token bucket in Lua.

The bucket (``pv:rl:<key id>``: tokens and the time they were counted) lives in
Redis and is refilled at ``rate`` tokens a second up to ``burst``, using the
server's clock, so all workers on all hosts draw from the same bucket.

To keep the Redis round trip off most requests, a worker takes tokens in small
leases (``lease_size``, about 1/20 s worth at the configured rate) and spends them
locally; a lease it has not spent within ``LEASE_S`` is dropped. Tokens are taken
from the shared bucket before they are spent, so the key's total never exceeds the
limit; a dropped lease only makes the limit slightly stricter. At low rates (under
40/s) the lease is one token: every request asks Redis, the limit is exact.

One refill per key is in flight at a time: requests that find the lease empty wait
for that one round trip rather than each sending their own (under 64 concurrent
requests a lease running dry used to send dozens of scripts at once, and each
reply overwrote the others' tokens). With leases of several tokens the next lease
is asked for when half of the current one is spent, so a busy key seldom waits.

While Redis is unreachable each worker falls back to a local bucket with the same
rate and burst (the limit then holds per worker, not per key).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = ["RateLimiter"]

log = logging.getLogger("verifier.ratelimit")

LEASE_S = 0.5

# KEYS[1] the bucket; ARGV rate (tokens/s), burst, tokens wanted.
# Returns {granted, seconds until one token is there (as text: Lua numbers are
# truncated to integers in replies)}.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
end
local granted = math.min(want, math.floor(tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted == 0 then wait = (1 - tokens) / rate end
return {granted, tostring(wait)}
"""


class _LocalBucket:
    __slots__ = ("tokens", "at")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.at = now


class _Lease:
    """Tokens a worker holds for one key, and the refill in flight (at most one)."""

    __slots__ = ("tokens", "expires", "refill")

    def __init__(self) -> None:
        self.tokens = 0
        self.expires = 0.0
        self.refill: asyncio.Future[float | None | _Fallback] | None = None


class _Fallback:
    """A refill's answer when Redis could not be asked: each waiter uses its local bucket."""


_FALLBACK = _Fallback()


class RateLimiter:
    """One worker's view of the per-key limits."""

    __slots__ = ("_redis", "_script", "rate", "burst", "lease_size", "_top_up_below", "_leases", "_local")

    def __init__(self, redis: AsyncRedisClient, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self._redis = redis
        self._script = redis.register_script(_TAKE)
        self.rate = rate
        self.burst = burst
        self.lease_size = max(1, min(int(rate / 20), burst // 4 or 1, 50))
        # A one-token lease is never asked for ahead of need: that keeps low limits exact.
        self._top_up_below = self.lease_size // 2 if self.lease_size > 1 else 0
        self._leases: dict[str, _Lease] = {}
        self._local: dict[str, _LocalBucket] = {}

    async def acquire(self, key_id: str) -> float | None:
        """None when the request may go ahead, else the seconds to wait (for Retry-After)."""
        lease = self._leases.get(key_id)
        if lease is None:
            lease = self._leases[key_id] = _Lease()
        while True:
            if self._take_leased(key_id, lease):
                return None
            refill = lease.refill
            if refill is None:
                refill = lease.refill = asyncio.ensure_future(self._refill(key_id, lease))
            # shielded: a caller that gives up must not cancel the refill the others wait for
            outcome = await asyncio.shield(refill)
            if outcome is _FALLBACK:
                return self._acquire_locally(key_id, time.monotonic())
            if outcome is not None:
                return outcome  # type: ignore[return-value]
            # tokens arrived (or another waiter took them first): look again

    def _take_leased(self, key_id: str, lease: _Lease) -> bool:
        if lease.tokens >= 1 and time.monotonic() < lease.expires:
            lease.tokens -= 1
            if lease.tokens < self._top_up_below and lease.refill is None:
                lease.refill = asyncio.ensure_future(self._refill(key_id, lease))
            return True
        return False

    async def _refill(self, key_id: str, lease: _Lease) -> float | None | _Fallback:
        """Take up to a lease of tokens from the shared bucket into ``lease``; returns None
        when some arrived, the seconds to wait when the bucket is empty, ``_FALLBACK``
        when Redis could not be asked. Never raises: nobody may be waiting for it."""
        try:
            granted_raw, wait_raw = await self._script(
                keys=["pv:rl:" + key_id], args=[repr(self.rate), self.burst, self.lease_size]
            )
            granted = int(granted_raw)
            if granted <= 0:
                return max(float(wait_raw), 0.001)
            now = time.monotonic()
            # tokens held past their lease are dropped, not carried over (the limit stays strict)
            lease.tokens = (lease.tokens if now < lease.expires else 0) + granted
            lease.expires = now + LEASE_S
            return None
        except REDIS_UNAVAILABLE:
            return _FALLBACK
        except Exception:  # a bug, but a background refill has nobody to raise it to
            log.exception("rate limit refill failed")
            return _FALLBACK
        finally:
            lease.refill = None

    async def aclose(self) -> None:
        """Let refills in flight finish (at shutdown), so that no task is left pending."""
        pending = [lease.refill for lease in self._leases.values() if lease.refill is not None]
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    def _acquire_locally(self, key_id: str, now: float) -> float | None:
        bucket = self._local.get(key_id)
        if bucket is None:
            bucket = self._local[key_id] = _LocalBucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> str:
    """Retry-After takes whole seconds; never 0 (that would invite an immediate retry)."""
    return str(max(1, math.ceil(seconds)))
