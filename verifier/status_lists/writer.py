"""The status-list writer: keeps the published ``permits`` and ``cards`` lists current.

One leader at a time (its own lock, ``{pv}:sl:leader``, with a fencing token; the
others stand by). The leader:

1. subscribes to the index's change channel, then reads every record of the live
   generation and builds both lists' entries (:class:`~.entries.ListEntries`); the
   subscription is in place before the walk, so a change during it is not missed;
2. on every ``apply`` message, re-reads the named records and updates their entries;
   on a ``switch`` (a full resync), on a lost subscription (pub/sub is at-most-once)
   and once an hour as a check, builds from the index again;
3. signs and stores a list when its entries changed (at most once a
   ``publish_interval``: min(1 s, ttl), so a change is published within about a
   second whatever the ttl), and re-signs it unchanged when it is 0.9 ttl old, so a
   stored list is never older than its ttl and never past its ``exp``.

A list's ``iat`` is the time the index was last confirmed consistent with the upstream
(the sync job's heartbeat), not the writer's clock: the status a list states is as of
then. While the index is not ready, or staler than ``staleness_bound_s``, nothing is
signed (the lists published expire on their own: status is never guessed), but a list
missing from Redis (a FLUSHALL) is put back as long as it has not expired.

Why a process of its own (``verifier status-lists``), and not a step of the sync job:
it only reads the index, so it meets the sync job in Redis and the index module alone,
like the API; a full build (a few seconds for a million permits) and the signing must
not delay the feed's apply; and a failure of its own (the key store unreachable, a bad
key ring) stops the signing, not the mirror. It restarts in seconds from the index, and
a standby takes over when the leader dies (its lock expires).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

import msgspec
import redis
from redis.cluster import RedisCluster

from verifier.index import scripts as index_scripts
from verifier.index.changes import changes_channel, decode_change
from verifier.index.errors import IndexNotReady, IndexUnavailable, PermitIndexError
from verifier.index.keys import DEFAULT_NAMESPACE
from verifier.index.reader import SyncPermitIndex
from verifier.index.status_lists import (
    BITS, NAMES, PUBLISH_JWKS, PUBLISH_LIST, PublishedList, StatusListKeys, base_uri, list_uri,
)
from verifier.index.trust_store import TRUST_CHANNEL
from verifier.issuing.keys import IssuerKey, KeyRing
from verifier.lib.progress import Bar
from verifier.lib.redis_client import SyncRedisClient, sync_client
from verifier.lib.redis_errors import REDIS_UNAVAILABLE
from verifier.lib.settings import Settings

from . import keys as signing_keys
from .entries import ListEntries
from .token import etag_of, status_list_token

__all__ = ["StatusListWriter", "WriterCounts", "run_status_lists"]

log = logging.getLogger("verifier.status_lists")

LOCK_TTL_S = 10.0
REBUILD_EVERY_S = 3600.0
"""A full build from the index this often, as a check of the incremental updates."""
KEYS_CHECK_S = 5.0
"""How often the signing keys are re-read from the store (a rotation takes effect within this)."""
PRESENCE_CHECK_S = 1.0
"""How often the stored lists are checked for (a FLUSHALL loses them)."""
RESIGN_AT = 0.9
"""A list is re-signed unchanged once it is this share of its ttl old."""
_WAIT_S = 0.1


class WriterCounts(msgspec.Struct):
    """What one run of the writer did (logged at exit; read by tests)."""

    builds: int = 0
    """Full builds from the index."""
    records_read: int = 0
    changes: int = 0
    """Records re-read on change messages."""
    published: int = 0
    """Lists signed and stored."""
    restored: int = 0
    """Lists put back unchanged after Redis lost them."""
    leaderships: int = 0
    errors: int = 0
    last_error: str | None = None
    rebuild_mismatches: int = 0
    """Checks (hourly builds) that found the incremental entries differed from the index: should stay 0."""


class _Lost(Exception):
    """The lock is gone: stop writing, stand by."""


class _Renewer(threading.Thread):
    def __init__(self, writer: "StatusListWriter") -> None:
        super().__init__(name="status-lists-lock", daemon=True)
        self.writer = writer
        self.lost = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        writer = self.writer
        while not self.halt.wait(writer.lock_ttl_s / 3):
            try:
                held = writer._renew(keys=[writer.keys.leader], args=[writer.lock_value,
                                                                       int(writer.lock_ttl_s * 1000)])
            except REDIS_UNAVAILABLE:
                continue  # cannot tell now; the lock's own expiry decides
            if not held:
                self.lost.set()
                return


class StatusListWriter:
    """One ``verifier status-lists`` process: standby until it leads, then keeps the lists current."""

    def __init__(
        self,
        settings: Settings,
        stop: threading.Event | None = None,
        *,
        redis_client: SyncRedisClient | None = None,
        store: SyncRedisClient | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        owner: str | None = None,
        lock_ttl_s: float = LOCK_TTL_S,
        rebuild_every_s: float = REBUILD_EVERY_S,
    ) -> None:
        if settings.status_list_ttl_s < 1:
            raise ValueError("status_list_ttl_s must be at least 1 s")
        if settings.status_list_lifetime_s <= settings.status_list_ttl_s:
            raise ValueError("status_list_lifetime_s (exp - iat) must be longer than status_list_ttl_s: "
                             "a list is re-signed every ttl and must still be current when it is")
        self.settings = settings
        self.stop = stop or threading.Event()
        if redis_client is None:
            if not settings.redis_url:
                raise ValueError("no Redis URL (REDIS_URL or --redis)")
            redis_client = sync_client(settings.redis_url)
        self.redis = redis_client
        if store is None:
            store = redis_client if settings.store_url_or_index == settings.redis_url \
                else sync_client(settings.store_url_or_index)
        self.store = store
        self.index = SyncPermitIndex(redis_client, namespace)
        self.keys = StatusListKeys(namespace)
        self.channel = changes_channel(namespace)
        self.base = base_uri(settings)
        self.ttl = settings.status_list_ttl_s
        self.lifetime = settings.status_list_lifetime_s
        self.publish_interval = min(1.0, float(self.ttl))
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lock_ttl_s = lock_ttl_s
        self.rebuild_every_s = rebuild_every_s
        self.counts = WriterCounts()
        self.fence: int | None = None
        self.entries: ListEntries | None = None
        self.published: dict[str, PublishedList] = {}
        """The lists this writer stored last, by name."""
        self.ring: KeyRing | None = None
        self._acquire = redis_client.register_script(index_scripts.ACQUIRE)
        self._renew = redis_client.register_script(index_scripts.RENEW)
        self._release = redis_client.register_script(index_scripts.RELEASE)
        self._publish_list = redis_client.register_script(PUBLISH_LIST)
        self._publish_jwks = redis_client.register_script(PUBLISH_JWKS)
        self._renewer: _Renewer | None = None
        self._dirty: set[str] = set()
        self._signed_at: dict[str, float] = {}
        """When each list was last signed (monotonic)."""
        self._signed_by: dict[str, bytes] = {}
        """The kid each list was last signed with."""
        self._built_at = 0.0
        self._keys_at = -1e9
        self._present_at = -1e9
        self._stale_logged = False

    @property
    def lock_value(self) -> str:
        return f"{self.fence}:{self.owner}"

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> WriterCounts:
        """Lead or stand by until ``stop`` is set; returns the counts."""
        log.info("status lists %s: lists under %s, ttl %d s, lifetime %d s", self.owner, self.base, self.ttl,
                 self.lifetime)
        failures = 0
        try:
            while not self.stop.is_set():
                try:
                    fence = self._acquire(keys=[self.keys.leader, self.keys.fence],
                                          args=[self.owner, int(self.lock_ttl_s * 1000)])
                except REDIS_UNAVAILABLE as exc:
                    failures += 1
                    self._failed(exc)
                    self.stop.wait(min(5.0, 0.2 * 2 ** min(failures, 5)))
                    continue
                failures = 0
                if fence is None:
                    self.stop.wait(min(1.0, self.lock_ttl_s / 3))
                    continue
                self.fence = int(fence)
                self.counts.leaderships += 1
                log.info("status lists %s: leading with fence %d", self.owner, self.fence)
                self._renewer = _Renewer(self)
                self._renewer.start()
                try:
                    self._lead()
                except _Lost:
                    log.warning("status lists %s: lost the lock; standing by", self.owner)
                finally:
                    self._stop_renewer()
                    self.fence = None
        finally:
            self._release_lock()
        log.info("status lists %s: stopped; %s", self.owner, msgspec.json.encode(self.counts).decode())
        return self.counts

    def _stop_renewer(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.halt.set()
            renewer.join(5)

    def _release_lock(self) -> None:
        if self.fence is not None:
            with contextlib.suppress(Exception):
                self._release(keys=[self.keys.leader], args=[self.lock_value])

    def _failed(self, exc: BaseException) -> None:
        self.counts.errors += 1
        self.counts.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("status lists: %s", self.counts.last_error)

    def _check_lock(self) -> None:
        if self._renewer is not None and self._renewer.lost.is_set():
            raise _Lost()

    def _lead(self) -> None:
        failures = 0
        while not self.stop.is_set():
            self._check_lock()
            pubsub = None
            try:
                pubsub = self._subscribe()
                self.entries = None  # whatever was held may have missed a change
                self._follow(pubsub)
            except (_Lost, KeyboardInterrupt):
                raise
            except (*REDIS_UNAVAILABLE, PermitIndexError, signing_keys.StatusKeyError) as exc:
                failures += 1
                self._failed(exc)
                self.stop.wait(min(5.0, 0.1 * 2 ** min(failures, 6)))
            except Exception as exc:  # a bug: keep the lists alive, but say so loudly
                failures += 1
                log.exception("status lists: unexpected error")
                self._failed(exc)
                self.stop.wait(min(5.0, 0.1 * 2 ** min(failures, 6)))
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def _subscribe(self) -> Any:
        client = self.redis
        if isinstance(client, RedisCluster):
            # listen on the index's own primary, as the API does: its death ends the subscription
            pubsub = client.pubsub(node=client.get_node_from_key(self.index.keys.current))
        else:
            pubsub = client.pubsub()
        pubsub.subscribe(self.channel)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                return pubsub
        raise IndexUnavailable("the change channel subscription was not confirmed")

    def _follow(self, pubsub: Any) -> None:
        """Build, then follow the change channel, publishing as due; returns only by raising."""
        while not self.stop.is_set():
            self._check_lock()
            now = time.monotonic()
            if now - self._keys_at >= KEYS_CHECK_S:
                self._keys_at = now
                try:
                    self._load_keys()
                except signing_keys.StatusKeyError as exc:  # a corrupt ring: keep signing with the one held
                    self._failed(exc)
            if self.entries is None or now - self._built_at >= self.rebuild_every_s:
                if not self._build():
                    self.stop.wait(0.5)  # the index is not ready: wait for the sync job
                    self._publish_due(time.monotonic())
                    continue
            changed: set[str] = set()
            rebuild = False
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=_WAIT_S)
            while message is not None:
                if message["type"] == "message":
                    try:
                        change = decode_change(message["data"])
                    except msgspec.DecodeError:
                        rebuild = True  # not understood: assume anything changed
                    else:
                        if change.kind == "switch":
                            rebuild = True
                        else:
                            changed.update(change.permit_numbers)
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            if rebuild:
                self.entries = None
                continue
            if changed:
                self._refresh(sorted(changed))
            self._publish_due(time.monotonic())

    # -- building and updating the entries ------------------------------------------------

    def _build(self) -> bool:
        """Every record of the live generation to new entries; False when the index is not ready."""
        started = time.monotonic()
        total = None
        with contextlib.suppress(Exception):  # only the bar's total: the build finds out for itself
            total = self.index.freshness().count
        bar = Bar("status lists: build", total)
        try:
            records = 0

            def counted() -> Any:
                nonlocal records
                for record in self.index.iter_records():
                    records += 1
                    if records % 50_000 == 0:
                        self._check_lock()
                    if records % 1000 == 0:
                        bar.update(records)
                    yield record

            built = ListEntries.build(counted())
            bar.update(records)
        except IndexNotReady as exc:
            log.info("status lists: the index is not ready (%s); waiting for the sync job", exc)
            return False
        finally:
            bar.finish()
        previous, self.entries = self.entries, built
        self._built_at = time.monotonic()
        self.counts.builds += 1
        self.counts.records_read += records
        if previous is not None and not previous.same_as(built):
            self.counts.rebuild_mismatches += 1
            log.error("status lists: a build from the index differs from the entries kept up to date "
                      "(now corrected)")
        for name in NAMES:
            held = self.published.get(name)
            if held is None or previous is None or previous.array(name).values != built.array(name).values:
                self._mark(name)
        log.info("status lists: built from %d records in %.2f s (permits %d entries, cards %d)", records,
                 time.monotonic() - started, len(built.permits), len(built.cards))
        return True

    def _refresh(self, permit_numbers: list[str]) -> None:
        assert self.entries is not None
        try:
            found = self.index.get_many("pn", permit_numbers)
        except IndexNotReady:
            self.entries = None
            return
        self.counts.changes += len(found)
        for record in found.values():
            for name in self.entries.apply(record):
                self._mark(name)

    def _mark(self, name: str) -> None:
        self._dirty.add(name)

    # -- keys ------------------------------------------------------------------------

    def _load_keys(self) -> None:
        """The ring from the store (made, or put back, when missing); its public keys stored for
        the API's trust list before anything is signed with a new one."""
        ring = signing_keys.load_or_create(self.store, [self.base], self.ring)
        changed = self.ring is None or signing_keys.encode_ring(ring) != signing_keys.encode_ring(self.ring)
        self.ring = ring
        self._publish_jwks(keys=[self.keys.leader, self.keys.jwks],
                           args=[self.lock_value, signing_keys.public_jwks(ring), TRUST_CHANNEL])
        if changed:
            signer = self._signer()
            for name in NAMES:
                if signer is None or self._signed_by.get(name) != signer.kid:
                    self._mark(name)  # re-sign with the key that signs now (a rotation, a revocation)
            log.info("status lists: signing keys: %s", ", ".join(f"{k.kid_text} ({k.status})" for k in ring))

    def _signer(self) -> IssuerKey | None:
        try:
            return self.ring.active if self.ring is not None else None
        except LookupError:
            return None

    # -- publishing ------------------------------------------------------------------

    def _publish_due(self, now_monotonic: float) -> None:
        """Sign the lists that are due: changed (at most once a publish_interval), never
        published, or 0.9 ttl old; then put back any that Redis lost."""
        now = time.time()
        due = []
        for name in NAMES:
            held = self.published.get(name)
            if held is None or now - held.iat >= RESIGN_AT * self.ttl:
                due.append(name)
            elif name in self._dirty and now_monotonic - self._signed_at.get(name, -1e9) >= self.publish_interval:
                due.append(name)
        if due and self.entries is not None:
            self._sign(due, now, now_monotonic)
        if now_monotonic - self._present_at >= PRESENCE_CHECK_S:
            self._present_at = now_monotonic
            self._restore_missing(now)

    def _status_time(self, now: float) -> int | None:
        """The lists' iat: when the index was last confirmed, if fresh enough to sign at all."""
        fresh = self.index.freshness()
        if not fresh.ready or fresh.as_of is None or fresh.lag_s is None \
                or fresh.lag_s > self.settings.staleness_bound_s:
            if not self._stale_logged:
                log.warning("status lists: the index is not fresh (ready %s, %s s behind): not signing; "
                            "the lists published expire on their own", fresh.ready, fresh.lag_s)
                self._stale_logged = True
            return None
        if self._stale_logged:
            log.info("status lists: the index is fresh again; signing")
            self._stale_logged = False
        return int(min(fresh.as_of, now))

    def _sign(self, names: list[str], now: float, now_monotonic: float) -> None:
        signer = self._signer()
        if signer is None:
            if self.counts.last_error is None or "no active" not in self.counts.last_error:
                self._failed(signing_keys.StatusKeyError("no active Status List signing key: run "
                                                         "'verifier status-lists keys rotate'; not signing"))
            return  # the lists published run out at their exp: status is never guessed
        iat = self._status_time(now)
        if iat is None:
            return
        assert self.entries is not None
        for name in names:
            previous = self.published.get(name)
            if previous is not None and previous.iat >= iat and name not in self._dirty \
                    and self._signed_by.get(name) == signer.kid:
                continue  # the index was not confirmed since: nothing newer to say
            token = status_list_token(signer, sub=list_uri(self.base, name), bits=BITS[name],
                                      bit_array=self.entries.array(name).packed(), iat=iat,
                                      exp=iat + self.lifetime, ttl=self.ttl)
            published = PublishedList(token=token, etag=etag_of(token), iat=iat, exp=iat + self.lifetime,
                                      ttl=self.ttl)
            self._store(name, published)
            self.published[name] = published
            self._signed_by[name] = signer.kid
            self._signed_at[name] = now_monotonic
            self._dirty.discard(name)
            self.counts.published += 1

    def _store(self, name: str, published: PublishedList) -> None:
        try:
            self._publish_list(keys=[self.keys.leader, self.keys.list(name)],
                               args=[self.lock_value, published.token, published.etag, published.iat,
                                     published.exp, published.ttl])
        except redis.ResponseError as exc:
            if str(exc).startswith("STALE_FENCE"):
                raise _Lost() from None
            raise

    def _restore_missing(self, now: float) -> None:
        """Put back a list Redis lost (a FLUSHALL), while it is still current."""
        restored = False
        for name, held in self.published.items():
            if held.exp > now and not self.redis.exists(self.keys.list(name)):
                self._store(name, held)
                self.counts.restored += 1
                restored = True
                log.info("status lists: put the %s list back (Redis had lost it)", name)
        if restored or not self.redis.exists(self.keys.jwks) \
                or not self.store.exists(signing_keys.SIGNING_KEYS_KEY):
            self._keys_at = -1e9  # the signers' keys with them (the ring held is put back), next round


def run_status_lists(settings: Settings, stop_event: threading.Event | None = None,
                     **options: Any) -> WriterCounts:
    """Run the writer until ``stop_event`` is set (a library entry point for the demo and tests)."""
    return StatusListWriter(settings, stop_event, **options).run()
