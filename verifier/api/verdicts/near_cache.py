"""A per-worker near-cache of permit records, so a scan usually needs no Redis round trip.

Entries (the record, or None for "no such permit") live ``TTL_S`` seconds at most
and the cache holds ``LIMIT`` of them. The sync job publishes every changed permit
number; the worker's subscriber drops those entries, so a cancellation reaches
every worker within the pub/sub delivery time (well under 1 s). Pub/sub is
at-most-once: while the subscription is down (or just re-established) the cache
is not trusted and is emptied, and readers go to Redis.

A read that raced with an invalidation must not put the old record back: puts carry
the ``epoch`` read before the Redis round trip, and any invalidation in between
makes them a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from verifier.index.records import PermitRecord

__all__ = ["NearCache"]

_MISS = object()


class NearCache:
    TTL_S = 60.0
    """A safety net only. Correctness rests on the invalidations: every change is
    published by the same Lua script that applies it, a resync's switch clears all,
    a lost subscription clears all and turns the cache off, and the index's freshness
    is checked on every request before the cache is consulted."""
    LIMIT = 100_000

    __slots__ = ("_entries", "epoch", "trusted", "hits", "misses")

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, PermitRecord | None]] = {}
        self.epoch = 0
        self.trusted = False
        """Set by the subscriber while its subscription is up."""
        self.hits = 0
        self.misses = 0

    def get(self, permit_number: str) -> PermitRecord | None | object:
        """The cached record (or None: known absent), or ``NearCache.MISS``."""
        if not self.trusted:
            return _MISS
        entry = self._entries.get(permit_number)
        if entry is None or entry[0] < time.monotonic():
            self.misses += 1
            return _MISS
        self.hits += 1
        return entry[1]

    def put(self, permit_number: str, record: PermitRecord | None, epoch: int) -> None:
        if not self.trusted or epoch != self.epoch:
            return
        entries = self._entries
        if len(entries) >= self.LIMIT and permit_number not in entries:
            del entries[next(iter(entries))]  # the oldest insertion
        entries[permit_number] = (time.monotonic() + self.TTL_S, record)

    def invalidate(self, permit_numbers: Iterable[str]) -> None:
        self.epoch += 1
        for permit_number in permit_numbers:
            self._entries.pop(permit_number, None)

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    MISS = _MISS
