"""The rate limiter's worker side under concurrency, against a real Redis.

A lease running dry under many concurrent requests must cost one refill, not one
script call per waiting request; and the shared bucket's limit still holds.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from verifier.api.ratelimit.limiter import RateLimiter
from verifier.lib.redis_client import async_client


async def _script_calls(client: Any) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def test_concurrent_requests_share_one_refill(redis_url: str) -> None:
    async def main() -> tuple[list[float | None], int, int]:
        client = async_client(redis_url)
        try:
            limiter = RateLimiter(client, rate=100_000.0, burst=100_000)
            await client.config_resetstat()
            answers = await asyncio.gather(*(limiter.acquire("k1") for _ in range(64)))
            await limiter.aclose()
            return list(answers), await _script_calls(client), limiter.lease_size
        finally:
            await client.aclose()

    answers, calls, lease_size = asyncio.run(main())
    assert answers == [None] * 64
    assert lease_size == 50
    # 64 tokens are two leases (+ at most one asked for ahead of need), not 64 round trips
    assert 2 <= calls <= 3, calls


def test_the_shared_limit_holds_under_concurrency(redis_url: str) -> None:
    rate, burst = 40.0, 8  # leases of 2 tokens

    async def main() -> tuple[list[float | None], float]:
        client = async_client(redis_url)
        try:
            limiter = RateLimiter(client, rate=rate, burst=burst)
            started = time.monotonic()
            answers = await asyncio.gather(*(limiter.acquire("k2") for _ in range(30)))
            elapsed = time.monotonic() - started
            await limiter.aclose()
            return list(answers), elapsed
        finally:
            await client.aclose()

    answers, elapsed = asyncio.run(main())
    allowed = sum(1 for a in answers if a is None)
    # the burst, plus what the bucket refilled while the requests ran (never more)
    assert burst <= allowed <= burst + math.ceil(rate * elapsed) + 1, (allowed, elapsed)
    assert all(a is None or a > 0 for a in answers)


def test_low_limits_stay_exact_one_token_per_round_trip(redis_url: str) -> None:
    async def main() -> tuple[list[float | None], int]:
        client = async_client(redis_url)
        try:
            limiter = RateLimiter(client, rate=0.5, burst=3)
            await client.config_resetstat()
            answers = [await limiter.acquire("k3") for _ in range(4)]
            await limiter.aclose()
            return answers, await _script_calls(client)
        finally:
            await client.aclose()

    answers, calls = asyncio.run(main())
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and answers[3] > 0
    assert calls == 4  # no token is taken ahead of need at one token a lease
