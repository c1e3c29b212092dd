"""The API's view of the permit index: the near-cache in front, freshness checked first.

Availability (WIRE-FORMAT 5, first row) is decided here, once for every kind of
request: the index state is polled by the worker's freshness task
(:meth:`IndexView.refresh`, every ``REFRESH_S``); a request is answered from the
index only when that state is ready and younger than ``staleness_bound_s``, and
when the record could be read. Otherwise :class:`IndexUnavailableError`, which the
verdicts turn into STATUS_UNAVAILABLE (never VALID) and the look-ups into 503.

The freshness bound. A poll that has not answered within ``POLL_TIMEOUT_S`` is a
failed poll, and a state is used only for ``FRESH_FOR_S`` (one poll interval plus
that timeout) after the poll that read it was sent: so a Redis that stops answering
without closing its connections (``SIGSTOP``, a partition) makes the state "unknown"
at most ``FRESH_FOR_S`` (0.5 s) after its last answer, whether or not the poll has
failed yet, and no near-cache entry answers after that. The reads a request makes
are bounded by ``READ_TIMEOUT_S``.

One rule for every endpoint: whenever the index is seen without its live generation
(the poll, or any read: a FLUSHALL, a new Redis), the state becomes "not ready" and
the near-cache is emptied at once, so that a verification (near-cache first) cannot
answer from a record that a look-up (straight to Redis) already finds gone.

Near-cache misses of concurrent requests share one round trip: a miss registers
its permit number and waits; once the event loop has run what was ready (every
request that arrived in the same turn), one MGET reads them all. redis-py spends
~60 µs of CPU on each command it sends, more than a scan costs otherwise, so under
load this is what keeps a scan of an uncached permit cheap. The batch is read with
the same generation check as any other read, and its results enter the near-cache
under the epoch read before the round trip (an invalidation in between wins).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verifier.api.verdicts.near_cache import NearCache
from verifier.api.verdicts.schemas import IndexAsOf
from verifier.api.verdicts.status import R_INDEX_NOT_READY, R_INDEX_STALE, R_UNAVAILABLE, rfc3339
from verifier.index import IndexNotReady, IndexUnavailable, PermitIndex
from verifier.index.records import PermitRecord
from verifier.lib.metrics import Metrics
from verifier.lib.redis_client import Reachability
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = ["FRESH_FOR_S", "POLL_TIMEOUT_S", "READ_TIMEOUT_S", "REFRESH_S", "IndexState", "IndexUnavailableError",
           "IndexView"]

REFRESH_S = 0.25
"""How often the freshness task polls the index."""
POLL_TIMEOUT_S = 0.25
"""A poll not answered within this is a failed poll (the index's state is then unknown)."""
FRESH_FOR_S = REFRESH_S + POLL_TIMEOUT_S
"""How long after its poll was sent a state is used (see the module docstring)."""
READ_TIMEOUT_S = 0.6
"""A request's read of the index, connection included, gives up after this (STATUS_UNAVAILABLE or 503)."""


@dataclass(frozen=True, slots=True)
class IndexState:
    """What the index said about itself at the last poll."""

    ready: bool
    seq: int | None
    confirmed_at: float | None
    """When the sync job last confirmed the index (epoch s, by this worker's clock)."""
    generation: int | None
    as_of: IndexAsOf
    polled_at: float = 0.0
    """When the poll that read this state was sent (monotonic s): the state is used until ``FRESH_FOR_S`` after."""


class IndexUnavailableError(Exception):
    """The index cannot give a status now; ``reason`` says why."""

    def __init__(self, reason: str, state: IndexState | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state


class _ReadFailed:
    """A batched read's outcome when the index could not answer (``reason``: status.*)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_Outcome = PermitRecord | None | _ReadFailed


class IndexView:
    __slots__ = ("index", "near_cache", "staleness_bound_s", "metrics", "state", "_error", "_pending", "_reads",
                 "poller", "reachability", "_generation")

    def __init__(self, index: PermitIndex, near_cache: NearCache, staleness_bound_s: float, metrics: Metrics, *,
                 poller: PermitIndex | None = None, reachability: Reachability | None = None) -> None:
        self.index = index
        self.near_cache = near_cache
        self.staleness_bound_s = staleness_bound_s
        self.metrics = metrics
        self.poller = poller or index
        """The reader the polls go through: one on a connection of its own, so that a poll never waits
        behind the requests' commands, nor is refused by the gate it opens."""
        self.reachability = reachability or Reachability()
        """The gate of the requests' client: closed by a failed poll, opened by an answered one."""
        self.state: IndexState | None = None
        self._generation: int | None = None
        self._error = R_UNAVAILABLE
        # permit number -> the outcome its waiters share, until the next batched read
        self._pending: dict[str, asyncio.Future[_Outcome]] = {}
        self._reads: set[asyncio.Task[None]] = set()

    async def refresh(self, timeout_s: float = POLL_TIMEOUT_S) -> IndexState | None:
        """Poll the index's freshness; a failure (or no answer within ``timeout_s``) makes every
        status unavailable until the next answered poll."""
        polled_at = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                freshness = await self.poller.freshness()
        except (IndexUnavailable, IndexNotReady, *REDIS_UNAVAILABLE) as exc:
            self.unknown(R_UNAVAILABLE)
            self.reachability.failed(type(exc).__name__, polled_at)
            return None
        self.reachability.answered()
        if not freshness.ready:
            self.not_ready()
            return None
        # The lag is measured by the Redis server's clock; carry it over to ours, so
        # that a worker whose clock is off still ages the index correctly.
        confirmed_at = time.time() - freshness.lag_s if freshness.lag_s is not None else None
        state = IndexState(
            ready=True,
            seq=freshness.seq,
            confirmed_at=confirmed_at,
            generation=freshness.generation,
            as_of=IndexAsOf(seq=freshness.seq, time=rfc3339(freshness.as_of) if freshness.as_of else None),
            polled_at=polled_at,
        )
        if self._generation != state.generation:
            self.near_cache.clear()  # a full resync (or a rebuild after a flush) switched other data in
            self._generation = state.generation
        self.state = state
        return state

    def unknown(self, reason: str = R_UNAVAILABLE) -> None:
        """The index's state is not known now: no status (the near-cache's included) until the next poll."""
        self.state, self._error = None, reason
        self.near_cache.clear()

    def not_ready(self) -> None:
        """The live generation is gone (seen by the poll or by any read): the near-cache goes with it."""
        self.unknown(R_INDEX_NOT_READY)
        self._generation = None

    def usable_state(self, now: float) -> IndexState:
        state = self.state
        if state is None:
            raise IndexUnavailableError(self._error)
        if time.monotonic() - state.polled_at > FRESH_FOR_S:
            raise IndexUnavailableError(R_UNAVAILABLE, state)  # the last poll has not answered in time
        if not state.ready:
            raise IndexUnavailableError(R_INDEX_NOT_READY, state)
        if state.confirmed_at is None or now - state.confirmed_at > self.staleness_bound_s:
            raise IndexUnavailableError(R_INDEX_STALE, state)
        return state

    async def permit(self, permit_number: str, now: float) -> tuple[PermitRecord | None, IndexState]:
        """The record (None: no such permit) and the state it is as of; raises IndexUnavailableError."""
        state = self.usable_state(now)
        cache = self.near_cache
        cached = cache.get(permit_number)
        if cached is not NearCache.MISS:
            self.metrics.inc("pv_near_cache", ("hit",))
            return cached, state  # type: ignore[return-value]
        self.metrics.inc("pv_near_cache", ("miss",))
        future = self._pending.get(permit_number)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._pending:
                loop.call_soon(self._start_read)
            future = self._pending[permit_number] = loop.create_future()
        # shielded: one waiter giving up (a client gone) must not cancel the others' answer
        outcome = await asyncio.shield(future)
        if isinstance(outcome, _ReadFailed):
            raise IndexUnavailableError(outcome.reason, state)
        return outcome, state

    def _start_read(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._read(batch))
        self._reads.add(task)  # a reference until done: the loop keeps only weak ones
        task.add_done_callback(self._reads.discard)

    async def _read(self, batch: dict[str, asyncio.Future[_Outcome]]) -> None:
        """One MGET for the permit numbers in ``batch``; every future gets its outcome."""
        cache = self.near_cache
        epoch = cache.epoch
        failed: _ReadFailed | None = None
        records: dict[str, PermitRecord] = {}
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                records = await self.index.get_many("pn", list(batch))
        except IndexNotReady:
            self.not_ready()
            failed = _ReadFailed(R_INDEX_NOT_READY)
        except (IndexUnavailable, *REDIS_UNAVAILABLE):
            failed = _ReadFailed(R_UNAVAILABLE)
        except asyncio.CancelledError:  # shutdown
            for future in batch.values():
                future.cancel()
            raise
        except Exception as exc:  # a bug: the waiters raise it (a 500, logged there)
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        get = records.get
        for permit_number, future in batch.items():
            if failed is None:
                record = get(permit_number)
                cache.put(permit_number, record, epoch)
                if not future.done():
                    future.set_result(record)
            elif not future.done():
                future.set_result(failed)

    async def permits(self, permit_numbers: Sequence[str], now: float) -> tuple[dict[str, PermitRecord | None], IndexState]:
        """Several records by permit number, the near-cache first and one round trip for the rest."""
        state = self.usable_state(now)
        cache = self.near_cache
        found: dict[str, PermitRecord | None] = {}
        missing: list[str] = []
        for pn in permit_numbers:
            cached = cache.get(pn)
            if cached is NearCache.MISS:
                missing.append(pn)
            else:
                found[pn] = cached  # type: ignore[assignment]
        if found:
            self.metrics.inc("pv_near_cache", ("hit",), len(found))
        if missing:
            self.metrics.inc("pv_near_cache", ("miss",), len(missing))
            missing = list(dict.fromkeys(missing))
            epoch = cache.epoch
            records = await self._get_many("pn", missing, state)
            for pn in missing:
                record = records.get(pn)
                found[pn] = record
                cache.put(pn, record, epoch)
        return found, state

    async def lookup(self, by: str, ids: Sequence[str], now: float) -> tuple[dict[str, PermitRecord], IndexState]:
        """Bulk look-up by pn, ssn or cn: ``{id: record}`` of the ids found (no near-cache:
        partners' look-ups are one-off reads)."""
        state = self.usable_state(now)
        return await self._get_many(by, ids, state), state

    async def lookup_stored(self, permit_numbers: Sequence[str], now: float) -> tuple[list[bytes | None], IndexState]:
        """Bulk look-up by pn, the records as stored (msgpack; None: no such permit), in order."""
        state = self.usable_state(now)
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                return await self.index.get_many_stored(permit_numbers), state
        except IndexNotReady:
            self.not_ready()
            raise IndexUnavailableError(R_INDEX_NOT_READY, state) from None
        except (IndexUnavailable, *REDIS_UNAVAILABLE):
            raise IndexUnavailableError(R_UNAVAILABLE, state) from None

    async def _get_many(self, by: Any, ids: Sequence[str], state: IndexState) -> dict[str, PermitRecord]:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                return await self.index.get_many(by, ids)
        except IndexNotReady:
            self.not_ready()
            raise IndexUnavailableError(R_INDEX_NOT_READY, state) from None
        except (IndexUnavailable, *REDIS_UNAVAILABLE):
            raise IndexUnavailableError(R_UNAVAILABLE, state) from None
