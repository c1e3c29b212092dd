"""ES1 replay guard (WIRE-FORMAT 5): a ``cti`` is accepted once within its lifetime, across all workers.

One atomic ``SET pv:cti:<cti> "<first ms>|<key id>/<terminal>" NX PX <ttl> GET``
(Redis >= 7.0, Valkey): the first scan stores who read it, any later scan gets that
back. The entry lives until the token's ``exp`` plus the clock-skew leeway, after
which the token is EXPIRED anyway. Scanners double-read: the same code from the same
terminal (of the same API key) within ``DOUBLE_READ_S`` of the first read is answered
again, marked as a repeat; any other terminal, or later, is REPLAYED.
"""

from __future__ import annotations

import time
from typing import Literal

from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["ReplayGuard", "DOUBLE_READ_S"]

DOUBLE_READ_S = 10.0
LEEWAY_S = 60  # WIRE-FORMAT 3

Outcome = Literal["first", "repeat", "replayed"]


class ReplayGuard:
    __slots__ = ("_redis",)

    def __init__(self, redis: AsyncRedisClient) -> None:
        self._redis = redis

    async def accept(self, cti: bytes, exp: int, reader: str, now: float | None = None) -> Outcome:
        """Record this read of ``cti``; ``reader`` is ``<key id>/<terminal>``. Raises RedisError."""
        now = time.time() if now is None else now
        ttl_ms = max(1000, int((exp + LEEWAY_S - now) * 1000))
        previous = await self._redis.set(
            "pv:cti:" + cti.hex(), f"{int(now * 1000)}|{reader}", nx=True, px=ttl_ms, get=True
        )
        if previous is None:
            return "first"
        text = previous.decode() if isinstance(previous, bytes) else previous
        first_ms, _, first_reader = text.partition("|")
        try:
            age = now - int(first_ms) / 1000
        except ValueError:
            return "replayed"
        if first_reader == reader and 0 <= age <= DOUBLE_READ_S:
            return "repeat"
        return "replayed"
