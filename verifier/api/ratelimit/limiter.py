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

While Redis is unreachable each worker falls back to a local bucket with the same
rate and burst (the limit then holds per worker, not per key).
"""

from __future__ import annotations

import math
import time
from typing import Any

from verifier.api.redis_failures import REDIS_DOWN

__all__ = ["RateLimiter"]

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


class RateLimiter:
    """One worker's view of the per-key limits."""

    __slots__ = ("_redis", "_script", "rate", "burst", "lease_size", "_leases", "_local")

    def __init__(self, redis: Any, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self._redis = redis
        self._script = redis.register_script(_TAKE)
        self.rate = rate
        self.burst = burst
        self.lease_size = max(1, min(int(rate / 20), burst // 4 or 1, 50))
        # key id -> [tokens left, lease expiry (monotonic)]
        self._leases: dict[str, list[float]] = {}
        self._local: dict[str, _LocalBucket] = {}

    async def acquire(self, key_id: str) -> float | None:
        """None when the request may go ahead, else the seconds to wait (for Retry-After)."""
        now = time.monotonic()
        lease = self._leases.get(key_id)
        if lease is not None and lease[0] >= 1 and now < lease[1]:
            lease[0] -= 1
            return None
        try:
            granted_raw, wait_raw = await self._script(
                keys=["pv:rl:" + key_id], args=[repr(self.rate), self.burst, self.lease_size]
            )
        except REDIS_DOWN:
            return self._acquire_locally(key_id, now)
        granted = int(granted_raw)
        if granted <= 0:
            self._leases.pop(key_id, None)
            return max(float(wait_raw), 0.001)
        if granted > 1:
            self._leases[key_id] = [granted - 1, now + LEASE_S]
        else:
            self._leases.pop(key_id, None)
        return None

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
