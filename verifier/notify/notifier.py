"""``verifier notify``: one notifier process. Run as many as wanted: they share the work.

Every process heartbeats in ``{pvn}:members`` and holds leases on its fair share of
the outbox partitions (``ceil(partitions / live processes)``; a lease expires
``notify_lease_ttl_s`` after its holder died, and the others take its partitions
over, pending messages and all). It delivers what its partitions hold
(:mod:`verifier.notify.dispatcher`).

One process at a time also leads (a lock with a fencing token, like the sync job's);
the leader, in one loop, so that each step sees the others' effects in order:

- fans the index's change stream out into the outbox (:mod:`verifier.notify.fanout`),
- walks the index for the expiry reminders that are due (:mod:`verifier.notify.reminders`),
- turns the audit's verifications into "your permit was verified" for the e-card
  platforms that asked for them,
- runs the replays subscribers asked for, a page at a time,
- removes what deleted subscriptions left.

Every write of the leader's is fenced and atomic with what it consumed (ENQUEUE), so
a leader killed at any instant loses nothing and repeats nothing; its successor
claims the change-stream entries it had read but not acknowledged (XAUTOCLAIM).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.exceptions

from verifier.index import scripts as lock_scripts
from verifier.index.change_stream import ChangeEntry, decode_entry
from verifier.index.keys import KeyLayout, Pointer
from verifier.index.stored import decode_stored
from verifier.lib.redis_client import AsyncRedisClient, ClientOptions, async_client, sync_client
from verifier.lib.redis_errors import REDIS_UNAVAILABLE
from verifier.lib.settings import Settings

from . import events
from .delivery import Deliverer
from .dispatcher import Dispatcher
from .fanout import Audience, Cursor, plan_batch
from .metrics import NotifyMetrics
from .outbox import ENQUEUE, Enqueue, Message
from .reminders import due_reminder, mark, today_in_china
from .store import NotifyStore, StoreKeys, Subscription, now_ms
from .urls import AddressPolicy

__all__ = ["AUDIT_STREAM", "Notifier", "run_notifier"]

log = logging.getLogger("verifier.notify")

CLIENT_OPTIONS = ClientOptions(socket_timeout_s=5.0, connect_timeout_s=2.0, retries=3, backoff_base_s=0.05,
                               backoff_cap_s=1.0, max_connections=128)
INDEX_GROUP = "notify"
"""The notifiers' consumer group on the index's change stream."""
AUDIT_STREAM = "pv:audit"
"""verifier.api.audit.log.AUDIT_STREAM (tests/notify hold the two together)."""
AUDIT_GROUP = "notify"
VERIFICATION_KINDS = frozenset({"qr", "card", "manual"})
"""Audit kinds that are verifications of a holder's permit (not look-ups)."""
FANOUT_COUNT = 500
FANOUT_BLOCK_MS = 100
REMINDER_PAGE = 1000
REPLAY_PAGE = 500
PURGE_EVERY_S = 60.0
PURGE_AFTER_MS = 30_000
GAUGES_EVERY_S = 5.0
SUBSCRIPTIONS_EVERY_S = 0.5
REVOCATIONS_EVERY_S = 5.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def _days_left(vt: str, today: dt.date) -> int:
    try:
        return (dt.date.fromisoformat(vt) - today).days
    except ValueError:
        return -1


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, n = text.partition("-")
    return int(ms or 0), int(n or 0)


class _Renewer:
    """Renews this process's locks (its partition leases, the leader lock) every ttl/4 from
    a thread of its own, with a client of its own: a busy event loop cannot let them lapse.

    The event loop says what it holds (:meth:`hold`, :meth:`forget`) and asks whether a
    lock is surely still its own (:meth:`valid`: renewed less than 0.8 ttl ago); a lock
    found lost goes to :meth:`take_lost` for the loop to act on."""

    def __init__(self, url: str, owner: str, ttl_s: float) -> None:
        self.owner = owner
        self.ttl_s = ttl_s
        timeout = max(0.2, ttl_s / 4)
        self.client = sync_client(url, ClientOptions(socket_timeout_s=timeout, connect_timeout_s=timeout, retries=0,
                                                     backoff_base_s=0.01, backoff_cap_s=0.05, max_connections=2))
        self._renew = self.client.register_script(lock_scripts.RENEW)
        self._held: dict[str, tuple[int, float]] = {}
        """lock key -> (fence, monotonic time until which it is surely ours)."""
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-lock-renewer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.ttl_s + 2)
        self.client.close()

    def hold(self, key: str, fence: int, since: float) -> None:
        with self._lock:
            self._held[key] = (fence, since + self.ttl_s * 0.8)
            self._lost.discard(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._held.pop(key, None)
            self._lost.discard(key)

    def valid(self, key: str) -> bool:
        held = self._held.get(key)
        return held is not None and time.monotonic() < held[1]

    def take_lost(self) -> set[str]:
        with self._lock:
            lost, self._lost = self._lost, set()
        return lost

    def _run(self) -> None:
        ttl_ms = int(self.ttl_s * 1000)
        while not self._stop.wait(self.ttl_s / 4):
            with self._lock:
                held = dict(self._held)
            for key, (fence, _until) in held.items():
                started = time.monotonic()
                try:
                    renewed = self._renew(keys=[key], args=[f"{fence}:{self.owner}", ttl_ms])
                except REDIS_UNAVAILABLE:
                    continue  # cannot tell now; valid() lapses on its own if it stays so
                with self._lock:
                    if self._held.get(key, (None,))[0] != fence:
                        continue  # forgotten or taken anew meanwhile
                    if renewed:
                        self._held[key] = (fence, started + self.ttl_s * 0.8)
                    else:
                        del self._held[key]
                        self._lost.add(key)


@dataclass
class _ReminderWalk:
    pointer: Pointer
    keys: AsyncIterator[Any]
    today: Any
    sent: int = 0


@dataclass
class _Replay:
    entry_id: str
    replay_id: str
    sub_id: str
    since_seq: int | None
    since_ms: int | None
    upto: Cursor
    start: str
    queued: int = 0
    oldest_seq: int | None = None
    first_ms: int | None = None


@dataclass
class _Leading:
    fence: int
    cursor: Cursor | None
    reminders: _ReminderWalk | None = None
    next_reminders_at: float = 0.0
    replay: _Replay | None = None
    purged_at: float = field(default_factory=time.monotonic)


class Notifier:
    def __init__(self, settings: Settings, *, index: AsyncRedisClient | None = None,
                 store: AsyncRedisClient | None = None, name: str | None = None,
                 metrics: NotifyMetrics | None = None) -> None:
        if index is None and not settings.redis_url:
            raise ValueError("no index Redis URL (REDIS_URL or --redis)")
        self.settings = settings
        self._owns = (index is None, store is None)
        self.index = index or async_client(settings.redis_url, CLIENT_OPTIONS)
        self.store_redis = store or async_client(settings.store_url_or_index, CLIENT_OPTIONS)
        self.store = NotifyStore(self.store_redis)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.metrics = metrics or NotifyMetrics()
        self.index_keys = KeyLayout()
        self.policy = AddressPolicy.from_settings(settings.webhook_allow_loopback, settings.webhook_allow_networks)
        self.deliverer = Deliverer(self.policy, connect_timeout_s=settings.notify_connect_timeout_s,
                                   read_timeout_s=settings.notify_read_timeout_s)
        self.ttl_s = max(0.5, settings.notify_lease_ttl_s)
        self.renewer = _Renewer(settings.store_url_or_index, self.name, self.ttl_s)
        self.dispatcher = Dispatcher(self.store_redis, settings, self.deliverer, self.metrics, self.name,
                                     lease_valid=lambda p: self.renewer.valid(StoreKeys.lease(p)))
        self.partitions = settings.notify_partitions
        self.audience = Audience(())
        self._subs_version = -1
        self._revocations_at = 0.0
        self._leases: dict[int, int] = {}
        """partition -> the fence our lease was granted with."""
        self._adopting: dict[int, asyncio.Task[None]] = {}
        """Partitions being taken over (claiming what was pending) while the leases are renewed."""
        self._stopping = False
        self._leader_task: asyncio.Task[None] | None = None
        self._leader_fence: int | None = None
        self._enqueue = self.store_redis.register_script(ENQUEUE)
        self._acquire = self.store_redis.register_script(lock_scripts.ACQUIRE)
        self._release = self.store_redis.register_script(lock_scripts.RELEASE)
        self.ready = asyncio.Event()
        """Set once the subscriptions are loaded and the first leases taken."""
        self.counts = {"fanned_out": 0, "reminders": 0, "verified": 0, "replayed": 0, "gaps": 0}

    # -- the process ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        partitions = await self._retrying(stop, self.store.partitions, self.settings.notify_partitions)
        if partitions is None:
            return  # stopped before the store could be reached
        self.partitions = partitions
        if self.partitions != self.settings.notify_partitions:
            log.warning("notify: the outbox has %d partitions (fixed at its first start); "
                        "VERIFIER_NOTIFY_PARTITIONS=%d is ignored", self.partitions, self.settings.notify_partitions)
        log.info("notify %s: %d partitions, lease %.1f s, %d deliveries at once", self.name, self.partitions,
                 self.ttl_s, self.settings.notify_concurrency)
        self.renewer.start()
        acks = asyncio.create_task(self.dispatcher.ack_loop(), name="notify-acks")
        loops = [
            asyncio.create_task(self._forever(self._refresh_subscriptions, SUBSCRIPTIONS_EVERY_S), name="notify-subs"),
            asyncio.create_task(self._forever(self._membership, self.ttl_s / 3), name="notify-leases"),
            asyncio.create_task(self._read_loop(), name="notify-reader"),
            asyncio.create_task(self._forever(self._gauges, GAUGES_EVERY_S), name="notify-gauges"),
        ]
        try:
            await stop.wait()
        finally:
            log.info("notify %s: stopping; %s", self.name, self.counts)
            # No new leases, leadership or reads first; then the queues finish their
            # attempts (acknowledged); then the leases go, so the others take over at once.
            self._stopping = True
            await _cancel(loops + list(self._adopting.values()))
            await self._stop_leading()
            await self.dispatcher.stop()
            await _cancel([acks])
            await self._let_go()
            self.renewer.stop()
            await self.deliverer.aclose()
            if self._owns[0]:
                await self.index.aclose()
            if self._owns[1]:
                await self.store_redis.aclose()
            log.info("notify %s: stopped", self.name)

    async def _retrying(self, stop: asyncio.Event, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` once the store answers; None if stopped first."""
        delay = 0.1
        while not stop.is_set():
            try:
                return await fn(*args)
            except REDIS_UNAVAILABLE as exc:
                log.warning("notify: the store cannot be reached (%s); retrying", type(exc).__name__)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
        return None

    async def _forever(self, step: Any, every_s: float) -> None:
        failing = False
        while not self._stopping:
            try:
                await step()
                if failing:
                    log.info("notify: %s works again", step.__name__.strip("_"))
                failing = False
            except asyncio.CancelledError:
                raise
            except REDIS_UNAVAILABLE as exc:
                if not failing:
                    log.warning("notify: %s: Redis unreachable (%s)", step.__name__.strip("_"), type(exc).__name__)
                failing = True
            except Exception:  # a bug: keep the loop alive, say so loudly
                log.exception("notify: %s failed", step.__name__.strip("_"))
            await asyncio.sleep(every_s)

    # -- subscriptions -------------------------------------------------------------------

    async def _refresh_subscriptions(self) -> None:
        version = await self.store.version()
        due = time.monotonic() - self._revocations_at >= REVOCATIONS_EVERY_S
        if version == self._subs_version and not due:
            return
        subs = await self.store.all()
        revoked = await self.store.revoked_owners(s.key_id for s in subs)
        platforms = await self.store.platforms_with_verified_notices(
            s.key_id for s in subs if s.role == "essc_platform")
        self._revocations_at = time.monotonic()
        self._subs_version = version
        self.audience = Audience(subs, revoked, platforms)
        self.dispatcher.set_subscriptions(self.audience.subscriptions)
        await self.dispatcher.ensure_lanes()

    # -- membership, leases, leadership ----------------------------------------------------

    async def _membership(self) -> None:
        now = now_ms()
        ttl_ms = int(self.ttl_s * 1000)
        for key in self.renewer.take_lost():
            if key == StoreKeys.leader:
                log.warning("notify %s: lost the leader lock", self.name)
                await self._stop_leading(release=False)
            else:
                partition = int(key.rsplit(":", 1)[1])
                log.warning("notify %s: lost the lease of partition %d", self.name, partition)
                await self._lost(partition)
        await self._leadership(ttl_ms)
        async with self.store_redis.pipeline(transaction=False) as pipe:
            pipe.zadd(StoreKeys.members, {self.name: now})
            pipe.zremrangebyscore(StoreKeys.members, 0, now - 10 * ttl_ms)
            pipe.zcount(StoreKeys.members, now - int(1.5 * ttl_ms), "+inf")
            _, _, live = await pipe.execute()
        share = math.ceil(self.partitions / max(1, live))
        for partition in sorted(self._leases, reverse=True)[: max(0, len(self._leases) - share)]:
            await self._hand_over(partition)  # more than my share: another process came up
        if len(self._leases) < share:
            offset = int.from_bytes(self.name.encode()[-4:], "big") % self.partitions
            for step in range(self.partitions):
                partition = (offset + step) % self.partitions
                if len(self._leases) >= share:
                    break
                if partition in self._leases:
                    continue
                started = time.monotonic()
                fence = await self._acquire(keys=[StoreKeys.lease(partition), StoreKeys.fence],
                                            args=[self.name, ttl_ms])
                if fence is not None:
                    self._leases[partition] = int(fence)
                    self.renewer.hold(StoreKeys.lease(partition), int(fence), started)
                    self._adopting[partition] = asyncio.create_task(self._adopt(partition),
                                                                    name=f"notify-adopt-{partition}")
        self.metrics.partitions_owned.set(len(self._leases))
        if not self.ready.is_set() and self._subs_version >= 0:
            self.ready.set()

    async def _adopt(self, partition: int) -> None:
        try:
            await self.dispatcher.adopt(partition)
        except REDIS_UNAVAILABLE as exc:
            log.warning("notify: could not take partition %d over (%s); letting it go", partition,
                        type(exc).__name__)
            self._adopting.pop(partition, None)
            await self._hand_over(partition)
        except Exception:
            # A partition held but never claimed would be renewed for ever and never read.
            log.exception("notify: taking partition %d over failed unexpectedly; letting it go", partition)
            self._adopting.pop(partition, None)
            await self._hand_over(partition)
        finally:
            self._adopting.pop(partition, None)

    async def _lost(self, partition: int) -> None:
        self._leases.pop(partition, None)
        self.renewer.forget(StoreKeys.lease(partition))
        adopting = self._adopting.pop(partition, None)
        if adopting is not None and adopting is not asyncio.current_task():
            await _cancel([adopting])
        await self.dispatcher.drop(partition)

    async def _hand_over(self, partition: int) -> None:
        fence = self._leases.get(partition)
        await self._lost(partition)
        if fence is not None:
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await self._release(keys=[StoreKeys.lease(partition)], args=[f"{fence}:{self.name}"])

    async def _leadership(self, ttl_ms: int) -> None:
        leading = self._leader_task is not None and not self._leader_task.done()
        if leading and self.renewer.valid(StoreKeys.leader):
            self.metrics.leader.set(1)
            return  # the renewer keeps it
        started = time.monotonic()
        fence = await self._acquire(keys=[StoreKeys.leader, StoreKeys.fence], args=[self.name, ttl_ms])
        if fence is not None and (not leading or self._leader_fence != int(fence)):
            await self._stop_leading(release=False)
            self._leader_fence = int(fence)
            self.renewer.hold(StoreKeys.leader, int(fence), started)
            log.info("notify %s: leading with fence %d", self.name, self._leader_fence)
            self._leader_task = asyncio.create_task(self._lead(self._leader_fence), name="notify-leader")
        elif fence is not None:
            self.renewer.hold(StoreKeys.leader, int(fence), started)
        elif leading:
            log.warning("notify %s: another notifier leads now", self.name)
            await self._stop_leading(release=False)
        self.metrics.leader.set(1 if self._leader_task is not None and not self._leader_task.done() else 0)

    async def _stop_leading(self, release: bool = True) -> None:
        task, self._leader_task = self._leader_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        fence, self._leader_fence = self._leader_fence, None
        self.renewer.forget(StoreKeys.leader)
        if release and fence is not None:
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await self._release(keys=[StoreKeys.leader], args=[f"{fence}:{self.name}"])

    async def _let_go(self) -> None:
        """A clean stop: the others take the partitions over at once."""
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            for partition in list(self._leases):
                await self._hand_over(partition)
            await self.store_redis.zrem(StoreKeys.members, self.name)

    # -- delivery ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        failing = False
        while not self._stopping:
            try:
                await self.dispatcher.read_once()
                failing = False
            except asyncio.CancelledError:
                raise
            except REDIS_UNAVAILABLE as exc:
                if not failing:
                    log.warning("notify: cannot read the outbox (%s)", type(exc).__name__)
                failing = True
                await asyncio.sleep(0.5)

    # -- leading ---------------------------------------------------------------------------

    async def _lead(self, fence: int) -> None:
        state: _Leading | None = None
        failures = 0
        while not self._stopping:
            try:
                if state is None:
                    state = await self._start_leading(fence)
                await self._fan_out(state)
                await self._reminder_step(state)
                await self._audit_step(state)
                await self._replay_step(state)
                if time.monotonic() - state.purged_at > PURGE_EVERY_S:
                    state.purged_at = time.monotonic()
                    await self.store.purge_deleted(self.partitions, now_ms() - PURGE_AFTER_MS)
                failures = 0
            except asyncio.CancelledError:
                raise
            except redis.exceptions.ResponseError as exc:
                if str(exc).startswith(("STALE_FENCE", "CURSOR_MOVED")):
                    log.warning("notify %s: no longer the leader (%s)", self.name, str(exc)[:80])
                    return
                failures += 1
                log.warning("notify: the leader's step was refused: %s", str(exc)[:200])
                state = None
                await asyncio.sleep(min(5.0, 0.1 * 2 ** failures))
            except REDIS_UNAVAILABLE as exc:
                failures += 1
                if failures == 1:
                    log.warning("notify: the leader cannot reach Redis (%s); retrying", type(exc).__name__)
                state = None  # read everything again from Redis
                await asyncio.sleep(min(5.0, 0.1 * 2 ** failures))
            except Exception:
                failures += 1
                log.exception("notify: the leader's step failed")
                state = None
                await asyncio.sleep(min(5.0, 0.1 * 2 ** failures))

    async def _start_leading(self, fence: int) -> _Leading:
        cursor = Cursor.decode(await self.store_redis.hget(StoreKeys.cursors, "index"))
        await self._ensure_group(self.index, self.index_keys.changelog, INDEX_GROUP, "0")
        await self._ensure_group(self.store_redis, AUDIT_STREAM, AUDIT_GROUP, "$")
        state = _Leading(fence, cursor)
        # What the previous leader read and had not acknowledged, first, in order.
        pending = await self._claim_all(self.index, self.index_keys.changelog, INDEX_GROUP)
        if pending:
            await self._fan_out_entries(state, pending)
        pending_audit = await self._claim_all(self.store_redis, AUDIT_STREAM, AUDIT_GROUP)
        if pending_audit:
            await self._verified(state, pending_audit)
        return state

    async def _ensure_group(self, client: AsyncRedisClient, stream: Any, group: str, start: str) -> None:
        try:
            await client.xgroup_create(stream, group, id=start, mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim_all(self, client: AsyncRedisClient, stream: Any, group: str) -> list[tuple[Any, Any]]:
        claimed: list[tuple[Any, Any]] = []
        start: Any = "0-0"
        while True:
            reply = await client.xautoclaim(stream, group, self.name, 0, start, count=1000)
            start = reply[0]
            claimed.extend(e for e in reply[1] if e[1])
            if _text(start) == "0-0":
                return claimed

    async def _fan_out(self, state: _Leading) -> None:
        try:
            reply = await self.index.xreadgroup(INDEX_GROUP, self.name, {self.index_keys.changelog: ">"},
                                                count=FANOUT_COUNT, block=FANOUT_BLOCK_MS)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The index's Redis lost its data (and the group with it): read the new stream from its start.
            log.warning("notify: the change stream's consumer group is gone (the index was flushed?); recreating it")
            await self._ensure_group(self.index, self.index_keys.changelog, INDEX_GROUP, "0")
            return
        for _stream, entries in reply or []:
            await self._fan_out_entries(state, [e for e in entries if e[1]])

    async def _fan_out_entries(self, state: _Leading, raw: list[tuple[Any, Any]]) -> None:
        # A subscription made before these changes were applied hears of them: the
        # audience is brought up to date (one GET when nothing changed) before planning.
        await self._refresh_subscriptions()
        decoded: list[ChangeEntry] = []
        for entry_id, fields in raw:
            try:
                decoded.append(decode_entry(entry_id, fields))
            except ValueError as exc:
                log.error("notify: change stream entry %s is unreadable (%s); skipped", _text(entry_id), exc)
        plan = plan_batch(decoded, state.cursor, self.audience, time.time())
        if plan.messages or plan.cursor != state.cursor:
            enqueue = Enqueue(self.partitions, fence=state.fence, cursor="index",
                              expected=state.cursor.encode() if state.cursor else "",
                              new=plan.cursor.encode() if plan.cursor else "")
            for message in plan.messages:
                enqueue.add(message)
            await self._write(enqueue)
        if raw:
            await self.index.xack(self.index_keys.changelog, INDEX_GROUP, *(e[0] for e in raw))
        state.cursor = plan.cursor
        self.counts["fanned_out"] += plan.changes
        self.counts["gaps"] += len(plan.gaps)
        if plan.gaps:
            self.metrics.gaps.inc(len(plan.gaps))

    async def _write(self, enqueue: Enqueue) -> None:
        keys, args = enqueue.call()
        await self._enqueue(keys=keys, args=args)
        for message in enqueue.messages:
            self.metrics.enqueued.labels(message.type).inc()

    # -- reminders -------------------------------------------------------------------------

    async def _reminder_step(self, state: _Leading) -> None:
        now = time.time()
        walk = state.reminders
        if walk is None:
            if time.monotonic() < state.next_reminders_at:
                return
            last = int(_text(await self.store_redis.hget(StoreKeys.cursors, "reminders_ms")) or 0)
            if (now * 1000 - last) / 1000 < self.settings.reminder_scan_interval_s:
                state.next_reminders_at = time.monotonic() + min(60.0, self.settings.reminder_scan_interval_s)
                return
            pointer = Pointer.parse(await self.index.get(self.index_keys.current))
            if pointer is None:
                state.next_reminders_at = time.monotonic() + 5.0  # no index yet
                return
            match = self.index_keys.record_prefix(pointer.generation) + b"*"
            walk = state.reminders = _ReminderWalk(pointer, self.index.scan_iter(match=match, count=REMINDER_PAGE),
                                                   today_in_china(now))
        keys: list[Any] = []
        async for key in walk.keys:
            keys.append(key)
            if len(keys) >= REMINDER_PAGE:
                break
        if keys:
            values = await self.index.mget([*keys, self.index_keys.current])
            if values[-1] != walk.pointer.raw:
                state.reminders = None  # switched under the walk: start again shortly
                state.next_reminders_at = time.monotonic() + 5.0
                return
            skip = len(self.index_keys.record_prefix(walk.pointer.generation))
            await self._remind([decode_stored(key[skip:].decode(errors="replace"), v)
                                for key, v in zip(keys, values) if v is not None], walk, state)
        if len(keys) < REMINDER_PAGE:
            await self.store_redis.hset(StoreKeys.cursors, "reminders_ms", int(now * 1000))
            log.info("notify: reminder walk done: %d reminders sent", walk.sent)
            state.reminders = None
            state.next_reminders_at = time.monotonic() + min(60.0, self.settings.reminder_scan_interval_s)

    async def _remind(self, records: list[Any], walk: _ReminderWalk, state: _Leading) -> None:
        days = self.settings.reminder_days
        if not days:
            return
        horizon = max(days)
        pairs = [(record, sub) for record in records
                 if record.status == "active" and 0 <= _days_left(record.vt, walk.today) <= horizon
                 for sub in self.audience.of_permit(record) if sub.wants(events.EXPIRING)]
        if not pairs:
            return
        # "sent" marks per subscription and permit: a subscription made later still hears
        # of the next reminder due, and none hears of one twice
        fields = [f"{sub.id} {record.pn}" for record, sub in pairs]
        marks = await self.store_redis.hmget(StoreKeys.reminded, fields)
        enqueue = Enqueue(self.partitions, fence=state.fence)
        now = time.time()
        for (record, sub), field_name, sent in zip(pairs, fields, marks):
            threshold = due_reminder(record, walk.today, days, _text(sent) or None)
            if threshold is None:
                continue
            enqueue.add(Message(sub=sub.id, key=record.pn, webhook_id=events.expiring_id(record.pn, record.vt, threshold),
                                type=events.EXPIRING,
                                body=events.expiring_body(record, threshold, _days_left(record.vt, walk.today),
                                                          sub.fields, now),
                                enqueued_ms=int(now * 1000), event_time=now))
            enqueue.marks.append((StoreKeys.reminded, field_name, mark(record, threshold)))
        if enqueue.marks:
            await self._write(enqueue)
            walk.sent += len(enqueue.marks)
            self.counts["reminders"] += len(enqueue.marks)

    # -- "your permit was verified" ----------------------------------------------------------

    async def _audit_step(self, state: _Leading) -> None:
        reply = await self.store_redis.xreadgroup(AUDIT_GROUP, self.name, {AUDIT_STREAM: ">"}, count=20)
        for _stream, entries in reply or []:
            await self._verified(state, [e for e in entries if e[1]])

    async def _verified(self, state: _Leading, raw: list[tuple[Any, Any]]) -> None:
        if not raw:
            return
        seen = _text(await self.store_redis.hget(StoreKeys.cursors, "audit"))
        fresh = [(_text(i), f) for i, f in raw if not seen or _stream_id(_text(i)) > _stream_id(seen)]
        platforms = self.audience.verified
        enqueue = Enqueue(self.partitions, fence=state.fence, cursor="audit", expected=seen,
                          new=fresh[-1][0] if fresh else seen)
        if platforms:
            for entry_id, fields in fresh:
                batch = fields.get(b"r") or fields.get("r")
                try:
                    records = orjson.loads(batch) if batch else []
                except orjson.JSONDecodeError:
                    continue
                for index, record in enumerate(records):
                    pn = record.get("pn") or ""
                    if record.get("kind") not in VERIFICATION_KINDS or not pn or "," in pn:
                        continue
                    at = int(record.get("t") or 0) / 1000
                    body = events.verified_body(pn, at, str(record.get("result", "")), str(record.get("role", "")),
                                                str(record.get("terminal", "")), str(record["kind"]))
                    for sub in platforms:
                        enqueue.add(Message(sub=sub.id, key=pn, webhook_id=events.verified_id(entry_id, index),
                                            type=events.VERIFIED, body=body, enqueued_ms=now_ms(), event_time=at))
        if fresh:
            await self._write(enqueue)
            self.counts["verified"] += len(enqueue.messages)
        await self.store_redis.xack(AUDIT_STREAM, AUDIT_GROUP, *(i for i, _ in raw))

    # -- replays -----------------------------------------------------------------------------

    async def _replay_step(self, state: _Leading) -> None:
        job = state.replay
        if job is None:
            if state.cursor is None:
                return
            after = _text(await self.store_redis.hget(StoreKeys.cursors, "replays")) or "0-0"
            entries = await self.store_redis.xrange(StoreKeys.replays, min="(" + after, count=1)
            if not entries:
                return
            entry_id, fields = entries[0]
            f = {_text(k): _text(v) for k, v in fields.items()}
            since_ms = int(f["since_ms"]) if f.get("since_ms") else None
            job = state.replay = _Replay(
                entry_id=_text(entry_id), replay_id=f.get("id", ""), sub_id=f.get("sub", ""),
                since_seq=int(f["since_seq"]) if f.get("since_seq") else None, since_ms=since_ms,
                upto=state.cursor, start=f"{since_ms}-0" if since_ms is not None else "-")
            await self.store_redis.hset(StoreKeys.replay(job.replay_id), mapping={
                "state": "running", "upto_seq": job.upto.seq})
        sub = next((s for s in self.audience.subscriptions if s.id == job.sub_id), None)
        if sub is None:
            await self._finish_replay(state, job, "failed", reason="no such subscription (deleted, or its key revoked)")
            return
        entries = await self.index.xrange(self.index_keys.changelog, min=job.start, count=REPLAY_PAGE)
        audience = Audience([sub])
        enqueue = Enqueue(self.partitions, fence=state.fence)
        done = len(entries) < REPLAY_PAGE
        for entry_id, fields in entries:
            try:
                entry = decode_entry(entry_id, fields)
            except ValueError:
                continue
            if job.first_ms is None:
                job.first_ms = int(_text(entry_id).partition("-")[0])
            if not entry.is_change or entry.feed != job.upto.feed:
                continue
            if entry.seq > job.upto.seq:
                done = True
                break
            if job.oldest_seq is None:
                job.oldest_seq = entry.seq
            if job.since_seq is not None and entry.seq <= job.since_seq:
                continue
            if job.since_ms is not None and entry.time * 1000 < job.since_ms:
                continue
            event_type = events.CHANGE_TYPES[entry.kind]  # type: ignore[index]
            if not sub.wants(event_type):
                continue
            for hearer, employer_change in audience.of_change(entry):
                enqueue.add(Message(sub=hearer.id, key=entry.pn, webhook_id=events.change_id(entry.feed, entry.seq),
                                    type=event_type, body=events.change_body(entry, hearer.fields, employer_change),
                                    enqueued_ms=now_ms(), event_time=entry.time))
        if entries:
            job.start = "(" + _text(entries[-1][0])
        if enqueue.messages:
            await self._write(enqueue)
            job.queued += len(enqueue.messages)
            self.counts["replayed"] += len(enqueue.messages)
        if done:
            complete = (job.oldest_seq is not None and job.since_seq is not None and job.oldest_seq <= job.since_seq + 1) \
                or (job.since_ms is not None and job.first_ms is not None and job.first_ms <= job.since_ms) \
                or (job.oldest_seq is None and job.since_seq is not None and job.since_seq >= job.upto.seq)
            await self._finish_replay(state, job, "done", complete=complete)
        else:
            await self.store_redis.hset(StoreKeys.replay(job.replay_id), "queued", job.queued)

    async def _finish_replay(self, state: _Leading, job: _Replay, outcome: str, *, complete: bool = False,
                             reason: str = "") -> None:
        await self.store_redis.hset(StoreKeys.replay(job.replay_id), mapping={
            "state": outcome, "queued": job.queued, "complete": "1" if complete else "0", "reason": reason,
            "oldest_seq": "" if job.oldest_seq is None else job.oldest_seq, "finished_ms": now_ms()})
        await self.store_redis.hset(StoreKeys.cursors, "replays", job.entry_id)
        log.info("notify: replay %s for %s %s: %d messages", job.replay_id, job.sub_id, outcome, job.queued)
        state.replay = None

    # -- gauges ------------------------------------------------------------------------------

    async def _gauges(self) -> None:
        subs: list[Subscription] = self.audience.subscriptions
        async with self.store_redis.pipeline(transaction=False) as pipe:
            for sub in subs:
                for p in range(self.partitions):
                    pipe.xlen(StoreKeys.outbox(sub.id, p))
            pipe.xlen(StoreKeys.dead)
            lengths = await pipe.execute()
        for i, sub in enumerate(subs):
            self.metrics.queue_depth.labels(sub.id).set(sum(lengths[i * self.partitions:(i + 1) * self.partitions]))
        self.metrics.dead_letters.set(lengths[-1])
        self.metrics.paused.set(sum(1 for s in subs if s.status == "paused"))
        with contextlib.suppress(redis.exceptions.ResponseError):
            for group in await self.index.xinfo_groups(self.index_keys.changelog):
                name = group.get("name") or group.get(b"name")
                if _text(name) == INDEX_GROUP and group.get("lag") is not None:
                    self.metrics.stream_lag.set(float(group["lag"]))


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel and wait; again, since a Redis read under a timeout can swallow a cancellation."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(5):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=2.0)
    if pending:
        log.error("notify: tasks did not stop: %s", sorted(t.get_name() for t in pending))


def run_notifier(settings: Settings, stop: asyncio.Event | None = None, **options: Any) -> None:
    """Run a notifier until ``stop`` is set (a library entry point for the demo and tests)."""

    async def main() -> None:
        notifier = Notifier(settings, **options)
        await notifier.run(stop or asyncio.Event())

    asyncio.run(main())
