"""The sync job: mirror the upstream permit system into the Redis permit index.

One leader at a time. Every ``verifier sync`` process takes the index's leader lock
(``IndexWriter.acquire_leadership``: a key with an expiry, 1 s by default, renewed
every third of it, holding a fencing token); the others wait as standbys, asking every
0.1 s, and take over when the leader's lock expires (it died) or is released (clean
shutdown). A job restarted on the same host reclaims its dead predecessor's lock at
once (:meth:`SyncJob._reclaim`: same identity, pid gone). Every write of the leader
carries its fencing token and the index refuses a stale one, so a leader that
stalled past its lock's expiry cannot write after its successor started.

The leader loop (each step re-reads the index's state from Redis, so nothing is
trusted from memory across a crash, a failover or a flush):

1. Not ready (first start, or Redis lost its data: the generation key is missing)
   → full resync.
2. Read the feed after the index's cursor. ``410 Gone`` (cursor older than the
   feed's window) → full resync; a ``feed_id`` other than the index's (the upstream
   reset its feed) → full resync.
3. Apply the page with ``IndexWriter.apply_page``: one Lua script writes the records
   (version-guarded), the look-ups and the new cursor together, and publishes the
   changed permit numbers on the changes channel. A kill -9 at any instant leaves
   the page either wholly applied with its cursor or not at all; a page read again
   after a restart is a no-op for the events at or below the cursor.
4. When the page reached the feed's head, heartbeat: the index is consistent with
   the upstream as of the page's time (readers use this for their staleness bound).
   Then wait ``sync_poll_interval_s``; otherwise read the next page at once.

A full resync streams ``GET /snapshot`` into a new generation beside the live one
(``begin_snapshot`` → ``add`` → ``commit``, which switches the generation pointer
and the cursor atomically, and announces the switch), then follows the feed from
the snapshot's sequence number. Each chunk of the load moves the generation's resync
cursor with it; a resync interrupted by a kill (or an error) is resumed by the next
attempt or leader from that cursor (``IndexWriter.resume_snapshot``); readers never
see a half-loaded index. A snapshot that takes versions back (the upstream restored
to an older state) waits for the operator (:meth:`SyncJob._hold_regression`).

Upstream and Redis failures are retried with jittered exponential backoff, logged
once per change of state (failing, failing otherwise, recovered), not per retry; the
last error, the lag (events and seconds) and the progress are written to Redis as
a :class:`~verifier.index.sync_status.SyncStatus` for ``GET /v1/admin/sync`` and
the metrics. The trust list is fetched at leadership start and every few seconds,
and stored (validated first) when it changed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

import msgspec
import redis
import redis.cluster

import fastpath
from verifier.index.errors import (
    CursorMismatch,
    IndexNotReady,
    IndexUnavailable,
    PermitIndexError,
    SnapshotAborted,
    StaleFence,
)
from verifier.index.keys import DEFAULT_NAMESPACE, KeyLayout
from verifier.index.regression import (
    Regression,
    RegressionCounter,
    clear_pending,
    read_acceptance,
    regression_token,
    write_pending,
)
from verifier.index.sync_status import SyncStatus, write_sync_status
from verifier.index.trust_store import save_trust_list_sync
from verifier.index.writer import IndexWriter, PreparedBatch
from verifier.lib import upstream_wire as wire
from verifier.lib.read_ahead import ReadAhead
from verifier.lib.redis_client import SyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE, redis_unavailable
from verifier.lib.settings import Settings
from verifier.sync.progress import Progress
from verifier.sync.upstream_client import (
    Backoff,
    CursorTooOld,
    Stopped,
    UpstreamClient,
    UpstreamError,
)

log = logging.getLogger("verifier.sync")

STATUS_INTERVAL_S = 0.5
TRUST_LIST_INTERVAL_S = 5.0


class SyncCounts(msgspec.Struct):
    """What one run of the job did (returned by :func:`run_sync`, logged at exit)."""

    events_applied: int = 0
    """Records replaced by feed events."""
    events_read: int = 0
    """Feed events read (including no-ops)."""
    pages: int = 0
    resyncs: int = 0
    records_loaded: int = 0
    """Records loaded by full resyncs."""
    errors: int = 0
    leaderships: int = 0
    """How many times this process became the leader."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _kind(exc: BaseException) -> str:
    """What failed, coarsely: a change of kind is a change of state (logged); the same
    kind again is a retry (not logged)."""
    text = str(exc)
    for word in ("HTTP 5", "HTTP 429", "truncated", "ConnectError", "RemoteProtocolError", "ReadError",
                 "Timeout", "refused"):
        if word in text:
            return f"{type(exc).__name__}: {word}"
    return type(exc).__name__


def _describe(exc: BaseException) -> str:
    # Exception texts name sequence numbers, keys and URLs, never permit data.
    return f"{type(exc).__name__}: {exc}"[:500]


class _Liveness:
    """A subscription that says "this sync process is alive" for as long as its socket is.

    The kernel closes a killed process's sockets, and Redis drops its subscriptions at
    once; so a standby that finds no subscriber on the leader's channel (``PUBSUB
    NUMSUB``, twice 0.1 s apart) knows the leader is dead and need not wait out the
    lock's TTL. Owners that keep one end with ``L`` (older jobs are waited out as
    before). Standalone Redis only: on a Cluster a subscription lives on one node, so
    the TTL alone decides there.
    """

    def __init__(self, redis_client: SyncRedisClient, namespace: str, owner: str) -> None:
        self.redis = redis_client
        self.enabled = not isinstance(redis_client, redis.cluster.RedisCluster)
        self.channel = alive_channel(namespace, owner)
        self.namespace = namespace
        self._pubsub: Any = None

    def ensure(self) -> None:
        """Subscribe (again, after Redis lost it: a restart); best effort."""
        if not self.enabled:
            return
        try:
            if self._pubsub is not None and self.subscribers(self.channel) >= 1:
                return
            self.close()
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.channel)
            self._pubsub = pubsub
        except REDIS_UNAVAILABLE as exc:
            log.debug("could not announce liveness: %s", _describe(exc))

    def subscribers(self, channel: bytes) -> int:
        return int(dict(self.redis.pubsub_numsub(channel)).get(channel, 0))

    def holder_dead(self, owner: str) -> bool:
        """True when ``owner`` keeps a liveness subscription and it is gone."""
        if not self.enabled or not owner.endswith("L"):
            return False
        channel = alive_channel(self.namespace, owner)
        try:
            return self.subscribers(channel) == 0
        except REDIS_UNAVAILABLE:
            return False

    def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()


def alive_channel(namespace: str, owner: str) -> bytes:
    return f"{KeyLayout(namespace).tag}:sync:alive:{owner}".encode()


class _Renewer:
    """Renews the leader lock every ttl/3 in a thread; sets ``lost`` when it is gone.

    Every write is fenced anyway; this only keeps a healthy leader from losing the lock
    while it waits on a slow upstream answer or a backoff.
    """

    def __init__(self, writer: IndexWriter, owner: str, fence: int, ttl_s: float,
                 liveness: _Liveness | None = None) -> None:
        self.liveness = liveness
        self.writer = writer
        self.owner = owner
        self.fence = fence
        self.ttl_s = ttl_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-lock-renewer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.ttl_s + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.writer.renew_leadership(self.owner, self.fence, self.ttl_s):
                    self.lost.set()
                    return
                if self.liveness is not None:
                    self.liveness.ensure()
            except PermitIndexError as exc:
                # Cannot tell now (Redis down or failing over): try again next round.
                log.debug("could not renew the leader lock: %s", _describe(exc))


class SyncJob:
    """One sync process: standby until it leads, then follows the upstream until stopped."""

    def __init__(
        self,
        settings: Settings,
        stop: threading.Event | None = None,
        *,
        redis_client: SyncRedisClient | None = None,
        upstream: UpstreamClient | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        owner: str | None = None,
        progress_stream: TextIO | None = None,
        trust_list_interval_s: float = TRUST_LIST_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        if redis_client is None:
            if not settings.redis_url:
                raise ValueError("no Redis URL (REDIS_URL or --redis)")
            from verifier.lib.redis_client import sync_client

            redis_client = sync_client(settings.redis_url)
        self.redis = redis_client
        self.namespace = namespace
        self.writer = IndexWriter(redis_client, namespace, change_stream_maxlen=settings.change_stream_maxlen)
        self.upstream = upstream or UpstreamClient(settings.upstream_url, stop=self.stop)
        self.identity = (settings.sync_instance or socket.gethostname()).replace(":", "-")
        """Who this job is across restarts (``--instance``, else the host name)."""
        self.explicit_identity = bool(settings.sync_instance)
        # "L": this job keeps a liveness subscription (see _Liveness).
        self.owner = owner or f"{self.identity}:{os.getpid()}:{secrets.token_hex(3)}L"
        self.liveness = _Liveness(redis_client, namespace, self.owner)
        self._dead_seen: str | None = None
        """The lock value whose holder's liveness channel was found empty at the last poll."""
        self.ttl_s = max(0.5, settings.sync_lock_ttl_s)
        self.poll_s = max(0.0, settings.sync_poll_interval_s)
        self.page_size = max(1, settings.sync_page_size)
        self.progress_stream = progress_stream
        self.trust_list_interval_s = trust_list_interval_s
        # The renewer keeps the lock through any wait, so the backoff need not fit in the TTL.
        self.backoff = Backoff(base=0.1, cap=10.0)
        self.counts = SyncCounts()
        self.fence: int | None = None
        self._renewer: _Renewer | None = None
        self.accept_regressions = settings.sync_accept_regression
        """Accept an upstream regression without waiting for the operator (still logged)."""
        self.prefetch = True
        """Read the next feed page while applying one (when behind)."""
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._droppers: list[threading.Thread] = []
        """Threads deleting replaced generations (see :meth:`_drop_in_background`)."""
        self._prefetched: tuple[int, concurrent.futures.Future[wire.FeedPage]] | None = None
        self._trust_digest: bytes | None = None
        self._trust_at = -1e9
        self._trust_failed = False
        self._status = SyncStatus(instance=self.owner, role="standby", state="starting",
                                  started_at=time.time(), updated_at=time.time())
        self._status_at = 0.0
        self._failing: str | None = None
        """The kind of the failure being retried (None: healthy); logged when it changes."""
        self._interrupted_pending = False
        """A dead leader's unfinished load is kept for a resync to resume; dropped once
        the index is caught up without needing it."""

    # -- status ---------------------------------------------------------------------

    def _set_status(self, force: bool = False, **changes: Any) -> None:
        self._status = msgspec.structs.replace(self._status, **changes)
        now = time.monotonic()
        if self.fence is None and self._status.role != "stopped":
            return  # only the leader speaks for the index
        if force or now - self._status_at >= STATUS_INTERVAL_S:
            self._status_at = now
            status = msgspec.structs.replace(self._status, updated_at=time.time())
            try:
                write_sync_status(self.redis, status, self.namespace)
            except REDIS_UNAVAILABLE as exc:  # the status waits for the next write
                log.debug("could not write the sync status: %s", _describe(exc))

    @property
    def status(self) -> SyncStatus:
        return self._status

    def _failed(self, exc: BaseException) -> None:
        """Count and report a failure; log it once per state change, not per retry."""
        self.counts.errors += 1
        kind = _kind(exc)
        if kind != self._failing:
            if self._failing is None:
                log.warning("sync: failing (%s); retrying with jittered backoff", _describe(exc))
            else:
                log.warning("sync: still failing, now: %s", _describe(exc))
            self._failing = kind
        caught_up_at = self._status.caught_up_at
        self._set_status(force=True, state="failing", last_error=_describe(exc), last_error_at=time.time(),
                         errors=self.counts.errors,
                         lag_s=round(time.time() - caught_up_at, 3) if caught_up_at else self._status.lag_s)

    def _recovered(self, failures: int) -> None:
        if self._failing is not None:
            log.info("sync: recovered after %d failed attempts", failures)
            self._failing = None

    # -- waiting and the lock ----------------------------------------------------------

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds; Stopped when stopped, StaleFence when the lock was lost."""
        if self.stop.wait(delay):
            raise Stopped()
        self._check_leadership()

    def _check_leadership(self) -> None:
        """Raise StaleFence if the renewer found the lock lost (it renews in the background,
        so a slow upstream request or a long backoff cannot let the lock lapse)."""
        renewer = self._renewer
        if renewer is not None and renewer.lost.is_set():
            raise StaleFence("the leader lock expired or was taken over")

    def _start_renewer(self, fence: int) -> None:
        self._renewer = _Renewer(self.writer, self.owner, fence, self.ttl_s, self.liveness)
        self._renewer.start()

    def _stop_renewer(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.stop()

    # -- the job ----------------------------------------------------------------------

    def run(self) -> SyncCounts:
        """Lead or stand by until ``stop`` is set; returns the counts."""
        log.info("sync %s: upstream %s, poll %.2fs, lock ttl %.1fs", self.owner, self.upstream.base_url,
                 self.poll_s, self.ttl_s)
        standby_logged = False
        failures = 0
        self.liveness.ensure()
        try:
            while not self.stop.is_set():
                try:
                    fence = self.writer.acquire_leadership(self.owner, self.ttl_s)
                except PermitIndexError as exc:  # Redis down or refusing: back off, try again
                    failures += 1
                    self._failed(exc)
                    self._wait(self.backoff.delay(failures))
                    continue
                failures = 0
                if fence is None:
                    fence = self._reclaim()
                if fence is None:
                    if not standby_logged:
                        log.info("sync %s: standby (another sync job leads)", self.owner)
                        standby_logged = True
                    self._status = msgspec.structs.replace(self._status, role="standby", state="waiting")
                    self._wait(min(0.1, self.ttl_s / 5))  # a takeover within TTL + this
                    continue
                standby_logged = False
                self.fence = fence
                self.liveness.ensure()
                self._start_renewer(fence)
                self.counts.leaderships += 1
                log.info("sync %s: leading with fence %d", self.owner, fence)
                self._set_status(force=True, role="leader", state="starting", fence=fence)
                try:
                    self._lead()
                except StaleFence as exc:
                    log.warning("sync %s: lost the leadership (%s); standing by", self.owner, exc)
                    self._stop_renewer()
                    self.fence = None
                    self._status = msgspec.structs.replace(self._status, role="standby", state="waiting",
                                                           fence=None)
        except Stopped:
            pass
        finally:
            self._shutdown()
        log.info("sync %s: stopped; %s", self.owner, msgspec.json.encode(self.counts).decode())
        return self.counts

    def _reclaim(self) -> int | None:
        """Take the lock of our own dead predecessor at once instead of waiting out its TTL.

        The holder is our dead predecessor when it has our identity (the host name, or
        ``--instance``) and its pid is gone from this host (or is our own pid: a container
        restarted with the same pid). Any other holder (an explicit ``--instance`` too:
        pids of another pid namespace say nothing) is taken over once its liveness
        subscription is gone (:class:`_Liveness`), else when its lock expires. Its writes
        are fenced anyway.
        """
        try:
            value = self.writer.leader()
        except PermitIndexError:
            return None
        if value is None:
            return None
        parts = value.split(":")
        if len(parts) != 4 or value.endswith(":" + self.owner):
            return None
        if parts[1] != self.identity:
            return self._take_over_if_dead(value, ":".join(parts[1:]))
        try:
            pid = int(parts[2])
        except ValueError:
            return None
        if self.explicit_identity or (pid != os.getpid() and _pid_alive(pid)):
            return self._take_over_if_dead(value, ":".join(parts[1:]))
        try:
            fence = self.writer.acquire_leadership(self.owner, self.ttl_s, take_over=value)
        except PermitIndexError:
            return None
        if fence is not None:
            log.info("sync %s: reclaimed the lock of its dead predecessor (pid %d)", self.owner, pid)
        return fence

    def _take_over_if_dead(self, value: str, holder: str) -> int | None:
        """Take the lock when its holder's liveness subscription was gone at two polls in a
        row (0.1 s apart). After a Redis restart every subscription is gone until its job
        subscribes again (within a third of the TTL): a standby may take over meanwhile, a
        needless failover but a harmless one (fenced; the index is intact, no resync)."""
        if not self.liveness.holder_dead(holder):
            self._dead_seen = None
            return None
        if self._dead_seen != value:
            self._dead_seen = value
            return None
        self._dead_seen = None
        self.liveness.ensure()  # ours first: we are about to lead
        try:
            fence = self.writer.acquire_leadership(self.owner, self.ttl_s, take_over=value)
        except PermitIndexError:
            return None
        if fence is not None:
            log.info("sync %s: took over from %s, whose connection to Redis is gone (dead)", self.owner, holder)
        return fence

    def _shutdown(self) -> None:
        self._stop_renewer()
        for thread in self._droppers:  # a drop cut short leaves an orphan for the next leader
            thread.join(timeout=2.0)
        self._prefetched = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.fence is not None:
            fence, self.fence = self.fence, None
            self._status = msgspec.structs.replace(self._status, role="stopped", state="stopped")
            with contextlib.suppress(Exception):
                write_sync_status(self.redis, msgspec.structs.replace(self._status, updated_at=time.time()),
                                  self.namespace)
            with contextlib.suppress(Exception):
                self.writer.release_leadership(self.owner, fence)  # a standby takes over at once
        self.liveness.close()
        with contextlib.suppress(Exception):
            self.upstream.close()

    def _lead(self) -> None:
        with contextlib.suppress(PermitIndexError):
            # Loads abandoned by a killed leader: the newest unfinished one is kept for a
            # resync to resume (resume_snapshot), the others go.
            interrupted = self.writer.interrupted_load()
            keep = interrupted[0] if interrupted else None
            pointer = self.writer.pointer()
            dropped = []
            for generation in self.writer.generations():
                if generation != keep and (pointer is None or generation != pointer.generation):
                    self.writer.drop_generation(generation)
                    dropped.append(generation)
            if dropped:
                log.info("dropped orphaned generations %s", dropped)
            if interrupted:
                log.info("sync: an interrupted resync (generation %d, %d records loaded) is kept to resume",
                         interrupted[0], interrupted[2])
            self._interrupted_pending = interrupted is not None
        self._trust_at = -1e9
        failures = 0
        while not self.stop.is_set():
            self._check_leadership()
            try:
                caught_up = self.step()
            except (StaleFence, Stopped):
                raise
            except (IndexNotReady, CursorMismatch, SnapshotAborted) as exc:
                # The index changed under us (flushed, switched): re-read it at once.
                log.info("sync: %s; re-reading the index state", _describe(exc))
                continue
            except (UpstreamError, PermitIndexError) as exc:
                failures += 1
                self._failed(exc)
                self._wait(self.backoff.delay(failures))
                continue
            except Exception as exc:  # a bug: keep the job alive, but say so loudly
                failures += 1
                log.exception("sync: unexpected error")
                self._failed(exc)
                self._wait(self.backoff.delay(failures))
                continue
            if failures or self._failing is not None:
                self._recovered(failures)
                failures = 0
                self._set_status(force=True, last_error=None)
            if caught_up:
                self._wait(self.poll_s)

    def _next_page(self, after: int) -> wire.FeedPage:
        """The page after ``after``: the one prefetched for it, or a fresh read."""
        pending, self._prefetched = self._prefetched, None
        if pending is not None and pending[0] == after:
            return pending[1].result()
        return self.upstream.feed(after, self.page_size)

    def _prefetch(self, after: int) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sync-prefetch")
        self._prefetched = (after, self._executor.submit(self.upstream.feed, after, self.page_size))

    def step(self) -> bool:
        """One round: resync if needed, else one page of the feed. True when caught up."""
        assert self.fence is not None
        self._sync_trust_list()
        state = self.writer.state()
        if not state.ready:
            reason = "first load" if state.generation is None else "the live generation is gone"
            self.resync(f"index not ready ({reason}; or Redis lost its data)")
            return False
        try:
            page = self._next_page(state.seq)
        except CursorTooOld as exc:
            self.resync(f"cursor {state.seq} too old for the feed (410; oldest kept {exc.first_seq})")
            return False
        if page.feed_id != state.feed_id:
            self.resync(f"the upstream feed was reset ({state.feed_id} -> {page.feed_id})")
            return False
        self.counts.pages += 1
        self.counts.events_read += len(page.events)
        lag_s = max(0.0, page.time - page.events[0].time) if page.events else 0.0
        cursor = state.seq
        generation = state.generation
        if self.prefetch and page.events and page.page_end < page.last_seq:
            self._prefetch(page.page_end)  # read the next page while this one is applied
        if page.events:
            result = self.writer.apply_page(page.events, cursor_before=state.seq, fence=self.fence)
            self.counts.events_applied += result.applied
            cursor = result.cursor
            generation = result.generation
        caught_up = page.page_end >= page.last_seq
        now = time.time()
        changes: dict[str, Any] = {}
        if caught_up:
            self.writer.heartbeat(cursor, page.time, self.fence)
            changes["caught_up_at"] = now
            if self._interrupted_pending:  # caught up without a resync: the old load can go
                self._interrupted_pending = False
                interrupted = self.writer.interrupted_load()
                if interrupted is not None:
                    self._drop_in_background(interrupted[0])
        previous_state = self._status.state
        self._set_status(
            force=previous_state != "following",
            state="following", feed_id=page.feed_id, cursor=cursor, head_seq=page.last_seq,
            lag_events=max(0, page.last_seq - cursor), lag_s=lag_s if not caught_up or page.events else 0.0,
            generation=generation, last_poll_at=now, events_applied=self.counts.events_applied,
            resync_loaded=None, resync_total=None, **changes,
        )
        return caught_up

    def resync(self, reason: str) -> None:
        """Load the upstream's snapshot into a new generation and switch it in.

        A load a dead leader left unfinished is resumed (its records below the resync
        cursor are checked against the stream, not written again). When the snapshot
        takes permits back to lower versions than the live index holds (the upstream was
        restored to an older state), it is not switched in until the operator accepts
        the regression (:meth:`_hold_regression`).
        """
        assert self.fence is not None
        log.warning("sync: full resync: %s", reason)
        self._set_status(force=True, state="resyncing", resync_reason=reason, resync_loaded=0, resync_total=None)
        self._interrupted_pending = False
        response, stream = self.upstream.open_snapshot()
        header = stream.header
        load = None
        live = self.writer.pointer()
        regression = RegressionCounter(self.writer, live) if live is not None else None
        try:
            interrupted = self.writer.interrupted_load()
            if interrupted is not None:
                load = self.writer.resume_snapshot(self.fence, interrupted[0], interrupted[1])
                log.info("sync: resuming the interrupted resync of generation %d from record %d",
                         load.generation, load.verify_until)
                self._set_status(force=True, resync_resumed_from=load.verify_until)
            else:
                load = self.writer.begin_snapshot(self.fence, expected_count=header.count)
                self._set_status(force=True, resync_resumed_from=None)
            progress = Progress(header.count, "resync", stream=self.progress_stream)

            def prepared() -> Iterator[PreparedBatch]:
                # In the read-ahead thread: the next frame is read, checked and encoded
                # while the one before is written (the GIL is free while Redis works).
                for batch in stream.batches():
                    if regression is not None:
                        regression.check(batch)
                    yield load.prepare(batch)

            with ReadAhead(prepared, name="resync-read-ahead", interrupt=response.close) as batches:
                for batch in batches:
                    load.write(batch)
                    progress.update(load.count)
                    self._check_leadership()
                    if self.stop.is_set():
                        raise Stopped()
                    self._set_status(resync_loaded=load.count, resync_total=header.count)
            response.close()
            if regression is not None and regression.permits:
                self._hold_regression(regression, header, load)
            previous = load.commit(header.seq, header.feed_id, upstream_time=header.time, drop_old=False)
            elapsed = progress.finish()
        except Stopped:
            raise  # leave the partial generation: the next leader resumes it
        except StaleFence:
            raise  # the load is the new leader's now (it resumes it)
        except (UpstreamError, PermitIndexError):
            raise  # keep the partial load: the next attempt resumes it
        except BaseException:
            if load is not None:
                with contextlib.suppress(Exception):
                    load.abort()
            raise
        finally:
            response.close()
        self.counts.resyncs += 1
        self.counts.records_loaded += load.written
        log.info("sync: resync done: %d records (%d written) at seq %d of feed %s in %.1f s",
                 load.count, load.written, header.seq, header.feed_id, elapsed)
        if previous is not None and previous.generation != load.generation:
            self._drop_in_background(previous.generation)
        self._set_status(force=True, state="following", resyncs=self.counts.resyncs, feed_id=header.feed_id,
                         cursor=header.seq, generation=load.generation, resync_loaded=load.count,
                         resync_total=header.count)

    def _hold_regression(self, regression: "RegressionCounter", header: wire.SnapshotHeader,
                         load: Any) -> None:
        """The upstream went back: alert, and keep the live index until the operator
        accepts (``verifier index accept-regression``, or ``--accept-regression``).

        Meanwhile the index is not confirmed any more, so once the staleness bound has
        passed the API answers STATUS_UNAVAILABLE: a status the upstream may have lost is
        never guessed. On acceptance the versions the index held are kept as each
        permit's floor (:mod:`verifier.index.regression`), so that a code minted from a
        version the upstream no longer knows answers SUPERSEDED, not index_behind for good.
        """
        state = self.writer.state()
        found = Regression(
            detected_at=time.time(), permits=regression.permits,
            index_feed_id=state.feed_id, index_seq=state.seq,
            upstream_feed_id=header.feed_id, upstream_seq=header.seq,
        )
        token = regression_token(found)
        accepted = self.accept_regressions or self._redis(read_acceptance, self.redis, self.namespace) == token
        if not accepted:
            log.error("sync: UPSTREAM REGRESSION: %d permits went back to lower versions (index: feed %s "
                      "seq %d; upstream snapshot: feed %s seq %d); the index stays as it was and goes "
                      "stale; to accept the upstream's older state run `verifier index accept-regression`",
                      found.permits, found.index_feed_id, found.index_seq, found.upstream_feed_id,
                      found.upstream_seq)
            self._set_status(force=True, state="regressed", regression=found)
            self._redis(write_pending, self.redis, found, token, self.namespace)
            while True:
                self._wait(0.25)  # Stopped / StaleFence end the wait; the load stays for resuming
                try:
                    if read_acceptance(self.redis, self.namespace) == token:
                        break
                except REDIS_UNAVAILABLE:
                    continue  # ask again; the load waits
                self._set_status(regression=found)
        self._redis(regression.store_floors)
        found = msgspec.structs.replace(found, accepted_at=time.time())
        log.warning("sync: upstream regression accepted: %d permits keep their former versions as floors; "
                    "switching to the upstream's older state", found.permits)
        self._redis(clear_pending, self.redis, self.namespace)
        self._set_status(force=True, state="resyncing", regression=found)

    @staticmethod
    def _redis(fn: Any, *args: Any) -> Any:
        """A Redis call whose failure is an IndexUnavailable (retried; a partial load is kept)."""
        try:
            return fn(*args)
        except REDIS_UNAVAILABLE as exc:
            raise redis_unavailable(exc, IndexUnavailable) from exc

    def _drop_in_background(self, generation: int) -> None:
        """Delete a replaced generation beside the feed (SCAN + UNLINK in batches, ~7 s
        for a million permits), so that following the feed resumes at once. Only that
        generation: it is no longer live and nothing can make it live again. If the job
        dies meanwhile, what is left is an orphan that the next leader drops."""
        def drop() -> None:
            try:
                deleted = self.writer.drop_generation(generation)
                log.info("sync: dropped the replaced generation %d (%d keys)", generation, deleted)
            except Exception as exc:  # cleanup can wait for the next leader
                log.warning("sync: could not drop the replaced generation %d yet: %s", generation, _describe(exc))

        thread = threading.Thread(target=drop, name=f"sync-drop-g{generation}", daemon=True)
        self._droppers = [t for t in self._droppers if t.is_alive()] + [thread]
        thread.start()

    def _sync_trust_list(self) -> None:
        """Fetch the trust list when due; store it when it changed (validated first)."""
        now = time.monotonic()
        if now - self._trust_at < self.trust_list_interval_s:
            return
        self._trust_at = now
        try:
            data = self.upstream.trust_list()
        except UpstreamError as exc:
            self._failed(exc)
            self._trust_failed = True
            return
        if self._trust_failed:  # recovered: the feed's own errors clear in _lead
            self._trust_failed = False
            self._recovered(1)
            self._set_status(force=True, last_error=None)
        digest = hashlib.sha256(data).digest()
        if digest == self._trust_digest:
            return
        try:
            changed = save_trust_list_sync(self.redis, data)
        except fastpath.TrustListError as exc:
            # WIRE-FORMAT 4: a bad list is refused as a whole; the previous one stays.
            self._failed(UpstreamError(f"the upstream's trust list was refused: {exc}"))
            return
        except REDIS_UNAVAILABLE as exc:  # try again next time
            self._trust_at = -1e9
            self._failed(redis_unavailable(exc, IndexUnavailable))
            return
        self._trust_digest = digest
        if changed:
            log.info("sync: stored a new trust list")


def run_sync(settings: Settings, stop_event: threading.Event | None = None, **options: Any) -> SyncCounts:
    """Run the sync job until ``stop_event`` is set (a library entry point for the demo and tests)."""
    return SyncJob(settings, stop_event, **options).run()
