"""One API worker's runtime: its Redis clients, caches, buffers and background tasks.

Two clients: ``redis``, the index's (permits, trust list, sync status; and what is
short-lived or can be counted again: challenges, the replay guard, rate limits,
metrics), a cache of the upstream that the sync job can always rebuild; and
``store``, the store of record's (API keys, the receipt key, the audit and its
checkpoint keys: what nothing can rebuild), ``settings.store_url`` or, when that is
not set, the same client as ``redis``.

Built by ``create_app`` and started by the app's lifespan. Redis being away at
start is not fatal: the worker starts, answers STATUS_UNAVAILABLE (and 503 where a
verdict is not the answer), and its background tasks keep trying until Redis is
back. Background tasks:

- the index subscriber: the sync job's change channel drops near-cache entries, the
  trust channel reloads the trust list. While it is not subscribed the near-cache
  is not trusted (pub/sub is at-most-once: a message may have been missed). On a
  Redis Cluster it subscribes on the primary that serves the index's slot, so that
  when that node dies the subscription dies with it and the near-cache is off at
  once, not at the next freshness poll;
- the store subscriber: the revocation channel drops a revoked API key from the key
  cache (the whole cache is dropped whenever it subscribes again);
- the freshness task, every 0.25 s: polls the index's freshness (and, when the
  store of record is another server, PINGs it), each poll on a connection of its own
  and bounded by 0.25 s (``verdicts/index_view.py``: a poll not answered in time
  makes every status unknown at once). Two failed polls in a row also close the gate
  of that server's request client (``lib/redis_client.py``, ``Reachability``): while it is
  closed every command fails at once, so a hung Redis costs no request a wait, and
  the first answered poll opens it again (a line is logged at each change);
- the maintenance loop, every 0.25 s: flushes the audit (chain, files, store:
  verifier/api/audit/log.py; on a client of its own whose timeout allows for the
  store's fsync); every second the metrics deltas; every few seconds it re-reads the
  trust list and checks that the store still holds the receipt key (putting it back
  if it was lost).

Every Redis call of the API is bounded: the request clients' commands by 0.5 s (no
second try after a timeout), the index reads of a request by 0.6 s in all, the polls
by 0.25 s, the audit flush by 3 s.

On shutdown the audit is sealed and flushed (what the store cannot take stays in the
audit files) and the metrics are flushed one last time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from verifier.api.audit.history import HistoryPolicy
from verifier.api.audit.log import AuditLog
from verifier.api.auth.keys import KEY_SET, REVOKED_CHANNEL, KeyVerifier
from verifier.api.cards.challenges import ChallengeStore
from verifier.api.holder.service import HolderService
from verifier.api.holder.sessions import HolderSessions
from verifier.api.holder.upstream import NoticeClient
from verifier.api.permits.service import PermitLookups
from verifier.api.ratelimit.limiter import RateLimiter
from verifier.api.receipts.signer import ReceiptSigner
from verifier.api.trust.service import TrustHolder
from verifier.api.verdicts.index_view import POLL_TIMEOUT_S, REFRESH_S, IndexUnavailableError, IndexView
from verifier.api.verdicts.near_cache import NearCache
from verifier.api.verdicts.replay import ReplayGuard
from verifier.api.verdicts.service import ReceiptHolder, Verifications
from verifier.index import CHANGES_CHANNEL, PermitIndex, decode_change
from verifier.index.sync_status import read_sync_status
from verifier.index.trust_store import TRUST_CHANNEL
from verifier.lib import metrics as metrics_lib
from verifier.lib.drain import DRAIN
from verifier.lib.metrics import METRICS_KEY, Metrics
from verifier.lib.redis_client import (
    BULK_OPTIONS,
    PROBE_OPTIONS,
    AsyncRedisClient,
    Reachability,
    async_client,
    gate,
)
from verifier.lib.redis_errors import REDIS_UNAVAILABLE
from verifier.lib.settings import Settings

__all__ = ["Runtime", "tune_gc"]

log = logging.getLogger("verifier.api")

TRUST_RECHECK_S = 5.0
"""The safety net behind the trust channel: how often the stored list is re-read."""
STARTUP_POLL_TIMEOUT_S = 2.0
"""The first poll, before the worker takes requests."""
MAINTENANCE_STOP_S = 8.0
"""At a stop, how long the maintenance step under way may take to end (an audit flush: 3 s a call at most)."""
METRICS_FLUSH_S = 1.0
"""How often a worker adds its counts to the shared totals (a scrape flushes its own worker first)."""


GC_THRESHOLDS = (20_000, 20, 20)
"""Young-generation collections every 20,000 net allocations instead of 700 (see tune_gc)."""


def tune_gc() -> None:
    """Garbage collection for a serving worker, once its start-up is done.

    The start-up heap (modules, the app, its routes and schemas: ~10^5 objects) is
    moved out of the collector's sight (``gc.freeze``), so the collections that
    follow traverse only what requests and caches made since; and young collections
    run less often (a request's objects die by reference counting, so a rarer
    collection finds about as few survivors). Fewer and shorter pauses: p99.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Runtime:
    def __init__(self, settings: Settings, redis: AsyncRedisClient | None = None, *,
                 store: AsyncRedisClient | None = None, tune_gc: bool = False) -> None:
        self.settings = settings
        self.redis: AsyncRedisClient | None = redis
        self.store: AsyncRedisClient | None = store
        self._tune_gc = tune_gc
        self._owns_redis = redis is None
        self._owns_store = store is None and bool(settings.store_url)
        self.metrics = Metrics()
        self.near_cache = NearCache()
        self.trust = TrustHolder()
        self.receipts = ReceiptHolder()
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()
        """Set while the index subscriber listens (the near-cache is trusted)."""
        self.store_subscribed = asyncio.Event()
        """Set while the store subscriber listens (revocations reach the key cache)."""
        self.subscription_node: str | None = None
        """On a cluster, the node (host:port) the subscriber listens on."""
        self._last_trust_check = 0.0
        self._last_metrics_flush = 0.0
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self.index_reachability = Reachability()
        """The index's Redis answered its last poll (closes the request client's gate when not)."""
        self.store_reachability = self.index_reachability
        """The same for the store of record (the index's own when they are one server)."""
        self._index_probe: AsyncRedisClient | None = None
        self._store_probe: AsyncRedisClient | None = None
        self._audit_store: AsyncRedisClient | None = None

    # --- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        if self.redis is None:
            self.redis = async_client(self.settings.redis_url)
        if self.store is None:
            self.store = async_client(self.settings.store_url) if self.settings.store_url else self.redis
        redis, store = self.redis, self.store
        settings = self.settings
        # The polls go through connections of their own (never queued behind requests, never refused by
        # the gates they keep); without a URL to open one (a client given by the caller), through the client.
        poller: PermitIndex | None = None
        if settings.redis_url and self._owns_redis:
            self._index_probe = async_client(settings.redis_url, PROBE_OPTIONS)
            poller = PermitIndex(self._index_probe)
            gate(redis, self.index_reachability)
        store_url = settings.store_url or settings.redis_url
        if store is not redis and settings.store_url and self._owns_store:
            self.store_reachability = Reachability()
            self._store_probe = async_client(settings.store_url, PROBE_OPTIONS)
            gate(store, self.store_reachability)
        audit_store = store
        if store_url and (self._owns_store or (store is redis and self._owns_redis)):
            audit_store = self._audit_store = async_client(store_url, BULK_OPTIONS)
            gate(audit_store, self.store_reachability)
        self.index = IndexView(PermitIndex(redis), self.near_cache, settings.staleness_bound_s, self.metrics,
                               poller=poller, reachability=self.index_reachability)
        self.keys = KeyVerifier(store)
        self.limiter = RateLimiter(redis, settings.rate_limit_per_s, settings.rate_limit_burst)
        history = HistoryPolicy.of(settings.holder_history_days, settings.holder_history_cap)
        self.audit = AuditLog.open(audit_store, settings.audit_path, history)
        self.challenges = ChallengeStore(redis)
        self.verifications = Verifications(
            trust=self.trust, index=self.index, replay=ReplayGuard(redis), challenges=self.challenges,
            audit=self.audit, metrics=self.metrics, receipts=self.receipts,
        )
        self.lookups = PermitLookups(self.index, self.audit)
        per_identifier = settings.holder_match_per_identifier_per_h
        # Sessions and match limits are short-lived (the index's Redis); the history, organisations and
        # terminals the holder service reads are data of record (the store).
        self.holder = HolderService(
            store=store, verifications=self.verifications, index=self.index, audit=self.audit, trust=self.trust,
            sessions=HolderSessions(redis, settings.holder_session_ttl_s), notices=NoticeClient(settings.upstream_url),
            history=history,
            match_per_key=RateLimiter(redis, settings.holder_match_per_s, max(1, int(settings.holder_match_per_s * 4))),
            match_per_identifier=RateLimiter(redis, per_identifier / 3600, max(1, per_identifier)),
        )
        # A first look before taking requests (no request waits on this one: it may take longer than a
        # poll); failures are retried by the loops, whose first poll is at once.
        await self.index.refresh(timeout_s=STARTUP_POLL_TIMEOUT_S)
        await self._maintain(force_trust=True)
        self._tasks = [
            asyncio.create_task(self._freshness_loop(), name="pv-freshness"),
            asyncio.create_task(self._subscription(
                "index change", self._index_pubsub, (CHANGES_CHANNEL, TRUST_CHANNEL),
                self._index_subscribed, self._index_unsubscribed), name="pv-subscriber"),
            asyncio.create_task(self._subscription(
                "store (key revocation)", self._store_pubsub, (REVOKED_CHANNEL,),
                self._store_subscribed, self.store_subscribed.clear), name="pv-store-subscriber"),
            asyncio.create_task(self._maintenance_loop(), name="pv-maintenance"),
        ]
        if self._tune_gc:
            tune_gc()

    async def stop(self) -> None:
        # The loops also watch this flag: redis-py's reads under a timeout can swallow a
        # cancellation (it turns into a read timeout), so a cancel alone may not stop them.
        self._stopping = True
        self._stop_requested.set()
        # The maintenance loop is let finish its step (an audit flush cancelled half-way could leave
        # records chained but never delivered); it leaves at its next tick.
        maintenance = [t for t in self._tasks if t.get_name() == "pv-maintenance"]
        if maintenance:
            _done, late = await asyncio.wait(maintenance, timeout=MAINTENANCE_STOP_S)
            if late:
                log.warning("shutdown: the maintenance step did not end within %.0f s; cancelling it",
                            MAINTENANCE_STOP_S)
        pending = {t for t in self._tasks if not t.done()}
        for _ in range(3):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=1.5)
        if pending:
            log.error("shutdown: background tasks did not stop: %s", sorted(t.get_name() for t in pending))
        self._tasks = []
        await self.limiter.aclose()
        await self.holder.aclose()
        # Clean shutdown: nothing buffered is lost (what the store cannot take now stays in the audit files).
        audit = self.audit
        files = audit.files
        await audit.close()
        await self._flush_metrics()
        left = len(audit)
        log.info("shutdown: %s; audit: %d records delivered to the store, %d left%s",
                 DRAIN.describe(), audit.written, left,
                 "" if not left else f" in {files.shard.directory} (delivered when a worker starts with the store "
                 "reachable)" if files is not None else " in memory: lost (no audit files)")
        for probe in (self._index_probe, self._store_probe, self._audit_store):
            if probe is not None:
                with contextlib.suppress(Exception):
                    await probe.aclose()
        if self._owns_store and self.store is not self.redis:
            with contextlib.suppress(Exception):
                await self.store.aclose()
        if self._owns_redis:
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    # --- background --------------------------------------------------------
    async def _freshness_loop(self) -> None:
        # At a fixed rate (not a fixed pause after each poll), so that an answered poll is never
        # more than REFRESH_S + POLL_TIMEOUT_S old (verdicts/index_view.py FRESH_FOR_S).
        due = time.monotonic() - REFRESH_S
        while not self._stopping:
            due += REFRESH_S
            now = time.monotonic()
            if due < now:  # fell behind (a stalled loop): no burst of polls to catch up
                due = now
            await asyncio.sleep(due - now)
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die: it is what opens the gates again
                log.exception("freshness poll failed")

    async def _poll(self) -> None:
        """One freshness poll of the index (and a PING of the store when it is another server), side by side."""
        index_was = self.index_reachability.down
        if self._store_probe is None:
            await self.index.refresh()
        else:
            store_was = self.store_reachability.down
            await asyncio.gather(self.index.refresh(), self._ping_store())
            self._log_reachability("store of record", self.store_reachability, store_was)
        self._log_reachability("index", self.index_reachability, index_was)

    async def _ping_store(self) -> None:
        polled_at = time.monotonic()
        try:
            async with asyncio.timeout(POLL_TIMEOUT_S):
                await self._store_probe.ping()  # type: ignore[union-attr]
        except REDIS_UNAVAILABLE as exc:
            self.store_reachability.failed(type(exc).__name__, polled_at)
        else:
            self.store_reachability.answered()

    @staticmethod
    def _log_reachability(what: str, reachability: Reachability, was: str | None) -> None:
        if was is None and reachability.down is not None:
            log.warning("the %s's Redis failed %d polls in a row (%s; a poll must answer within %.2f s): its "
                        "commands fail at once until it answers%s", what, reachability.failures, reachability.down,
                        POLL_TIMEOUT_S, " (statuses: STATUS_UNAVAILABLE)" if what == "index" else "")
        elif was is not None and reachability.down is None:
            log.warning("the %s's Redis answers again, after %.1f s", what, time.monotonic() - reachability.since)

    async def _maintenance_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_S):
                    await self._stop_requested.wait()
            if self._stopping:
                return  # the stop flushes the audit itself
            try:
                await self._maintain()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die: it is what recovers the worker
                log.exception("maintenance step failed")

    async def _maintain(self, force_trust: bool = False) -> None:
        now = time.monotonic()
        if force_trust or self.trust.current is None or now - self._last_trust_check > TRUST_RECHECK_S:
            self._last_trust_check = now
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await self.trust.reload(self.redis)
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                self.receipts.signer = await ReceiptSigner.load_or_create(self.store, self.receipts.signer)
        elif self.receipts.signer is None:
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                self.receipts.signer = await ReceiptSigner.load_or_create(self.store)
        written = await self.audit.flush()
        if written:
            self.metrics.inc("pv_audit_records", (), written)
        if now - self._last_metrics_flush >= METRICS_FLUSH_S:
            self._last_metrics_flush = now
            await self._flush_metrics()

    async def _flush_metrics(self) -> None:
        if not self.metrics.pending():
            return
        fields = self.metrics.take()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for field, value in fields.items():
                    pipe.hincrbyfloat(METRICS_KEY, field, value)
                await pipe.execute()
        except REDIS_UNAVAILABLE:
            self.metrics.give_back(fields)

    async def _subscription(
        self,
        what: str,
        open_pubsub: Callable[[], Any],
        channels: tuple[str, ...],
        on_subscribed: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
    ) -> None:
        """Listen on ``channels`` until stopped, subscribing again (with backoff) whenever the subscription is lost.

        ``on_subscribed`` runs once every channel is confirmed (anything cached before may
        have missed a message), ``on_lost`` whenever the subscription ends."""
        backoff = 0.05
        outage_logged = False
        while not self._stopping:
            try:
                pubsub = open_pubsub()
            except Exception:  # a cluster client without a usable slot map yet
                pubsub = None
            try:
                if pubsub is None:
                    raise ConnectionError("no node serves the slot yet")
                await pubsub.subscribe(*channels)
                confirmed = 0
                while confirmed < len(channels) and not self._stopping:  # until all are in place, messages could be missed
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "subscribe":
                        confirmed += 1
                await on_subscribed()
                if outage_logged:
                    log.warning("subscribed again to the %s channel", what)
                backoff, outage_logged = 0.05, False
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        await self._on_message(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # RedisError, OSError, or a cluster client's own failures
                if not outage_logged:
                    log.warning("%s subscription lost (%s)%s", what, type(exc).__name__,
                                "; near-cache off until it is back" if CHANGES_CHANNEL in channels else "")
                    outage_logged = True
            finally:
                on_lost()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 1.0)

    async def _index_subscribed(self) -> None:
        # Anything cached before now may have missed an invalidation: start empty.
        self.near_cache.clear()
        self.near_cache.trusted = True
        self.subscribed.set()
        await self.trust.reload(self.redis)

    def _index_unsubscribed(self) -> None:
        self.near_cache.trusted = False
        self.near_cache.clear()
        self.subscribed.clear()
        self.subscription_node = None

    async def _store_subscribed(self) -> None:
        self.keys.forget()  # a revocation may have been missed while not subscribed
        self.store_subscribed.set()

    def _index_pubsub(self) -> Any:
        redis = self.redis
        if isinstance(redis, AsyncRedisCluster):
            # Pub/sub is broadcast to every node of a cluster: listen on the index's own
            # primary, so that its death also ends the subscription (near-cache off).
            node = redis.get_node_from_key(self.index.index.keys.current)
            self.subscription_node = node.name
            return redis.pubsub(node=node)
        return redis.pubsub()

    def _store_pubsub(self) -> Any:
        store = self.store
        if isinstance(store, AsyncRedisCluster):
            return store.pubsub(node=store.get_node_from_key(KEY_SET))  # the keys' own primary, as above
        return store.pubsub()

    async def _on_message(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        if name == REVOKED_CHANNEL:
            self.keys.forget(data.decode(errors="replace") if isinstance(data, bytes) else str(data))
            return
        if name == TRUST_CHANNEL:
            await self.trust.reload(self.redis)
            return
        try:
            change = decode_change(data if isinstance(data, bytes) else str(data).encode())
        except msgspec.DecodeError:
            self.near_cache.clear()  # not understood: assume anything changed
            return
        if change.kind == "apply":
            self.near_cache.invalidate(change.permit_numbers)
        else:  # "switch": a full resync put another generation in force
            self.near_cache.clear()

    # --- metrics -----------------------------------------------------------
    async def render_metrics(self) -> bytes:
        await self._flush_metrics()
        try:
            totals = await self.redis.hgetall(METRICS_KEY)
            store_up = 1.0
        except REDIS_UNAVAILABLE:
            totals, store_up = {}, 0.0
        now = time.time()
        state = self.index.state
        gauges = [
            metrics_lib.gauge("pv_metrics_store_up", "1 when the shared metrics could be read from Redis", store_up),
            metrics_lib.gauge("pv_index_ready", "1 when the index is ready and fresher than its bound",
                              1.0 if self._index_usable(now) else 0.0),
            metrics_lib.gauge("pv_index_lag_seconds", "Seconds since the sync job last confirmed the index",
                              now - state.confirmed_at if state is not None and state.confirmed_at else None),
            metrics_lib.gauge("pv_index_seq", "Change-feed sequence the index is consistent with",
                              float(state.seq) if state is not None and state.seq is not None else None),
            metrics_lib.gauge("pv_near_cache_entries", "Entries in this worker's near-cache", float(len(self.near_cache))),
            metrics_lib.gauge("pv_audit_buffered", "Audit records of this worker not yet in the store "
                              "(in its audit files while the store is away)", float(len(self.audit))),
        ]
        gauges.extend(await self._sync_gauges())
        return metrics_lib.render(totals, gauges)

    def _index_usable(self, now: float) -> bool:
        try:
            self.index.usable_state(now)
        except IndexUnavailableError:
            return False
        return True

    async def _sync_gauges(self) -> list[Any]:
        try:
            status = await read_sync_status(self.redis)
        except REDIS_UNAVAILABLE:
            status = None

        def value(name: str) -> float | None:
            found = getattr(status, name, None) if status is not None else None
            return float(found) if found is not None else None

        return [
            metrics_lib.gauge("pv_sync_lag_events", "Feed events the index lacked at the sync job's last poll",
                              value("lag_events")),
            metrics_lib.gauge("pv_sync_lag_seconds", "Age of the oldest change the index lacked at the last poll",
                              value("lag_s")),
            metrics_lib.gauge("pv_sync_errors", "Failures the leading sync job has seen since it started",
                              value("errors")),
            metrics_lib.gauge("pv_sync_upstream_regression",
                              "Permits the upstream took back to lower versions, held back until the operator "
                              "accepts (verifier index accept-regression); 0 when none waits",
                              float(status.regression.permits) if status is not None and status.regression is not None
                              and status.regression.accepted_at is None else 0.0 if status is not None else None),
            metrics_lib.gauge("pv_sync_report_age_seconds", "Seconds since the sync job last reported",
                              time.time() - status.updated_at if status is not None and status.updated_at else None),
        ]
