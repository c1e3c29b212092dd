"""Delivery of the partitions this process holds: in order per permit, in parallel across permits.

For each partition it holds (:class:`Dispatcher.adopt`) the dispatcher first claims
every message still pending in that partition's streams for anybody (XAUTOCLAIM:
the previous holder died or let go) with their retry state, then reads new ones
(one XREADGROUP over all its streams). Messages of one permit for one subscription
form a queue that one task works through, head first: the next message of a permit
is sent only once the previous one was answered 2xx and acknowledged (XACK + XDEL,
batched across tasks), so a crash can repeat the last message of a permit but never
send a later one before it. Failures are retried with exponential back-off and
jitter (``notify_retry_base_s`` doubling up to ``notify_retry_cap_s``, or the
receiver's ``Retry-After`` when longer) until ``notify_retry_window_s`` after the
message was queued, then dead-lettered; each attempt is logged for the owner. An
endpoint that failed ``notify_pause_after_failures`` times in a row over at least
``notify_pause_after_s`` (or answered 410 Gone) is paused: its messages wait, in
order, in the outbox until its owner resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.exceptions

from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE
from verifier.lib.settings import Settings

from .delivery import Attempt, Deliverer
from .metrics import NotifyMetrics
from .outbox import FAILED, Message
from .signing import Signer
from .store import ATTEMPTS_KEPT, DEAD_LETTERS_KEPT, GROUP, StoreKeys, Subscription, now_ms, retry_field

__all__ = ["Dispatcher"]

log = logging.getLogger("verifier.notify")

PER_ENDPOINT = 16
"""Deliveries to one subscription at once (its connection pool's size: httpx's pool costs
grow with the requests queued in it, so none are)."""
LANE_CAPACITY = 2000
"""Messages one (subscription, partition) stream may hold in memory before reading it pauses."""
READ_COUNT = 200
READ_BLOCK_MS = 100
CLAIM_COUNT = 500


def backoff_s(attempts: int, base_s: float, cap_s: float) -> float:
    """Exponential back-off with equal jitter: half the step, plus up to the other half."""
    step = min(cap_s, base_s * 2 ** max(0, attempts - 1))
    return step / 2 + random.random() * step / 2


@dataclass
class Lane:
    """One outbox stream this process delivers: (subscription, partition)."""

    sub: str
    partition: int
    stream: str
    queues: dict[str, deque[Message]] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    held: int = 0
    claimed: bool = False
    """What was pending in its stream is taken over: new messages may be read (never before: order)."""

    @property
    def full(self) -> bool:
        return self.held >= LANE_CAPACITY


@dataclass
class Held:
    """A partition this process holds."""

    partition: int
    lanes: dict[str, Lane] = field(default_factory=dict)


@dataclass
class _Done:
    lane: Lane
    message: Message
    attempt: Attempt
    future: asyncio.Future[None]


class Dispatcher:
    def __init__(self, store: AsyncRedisClient, settings: Settings, deliverer: Deliverer, metrics: NotifyMetrics,
                 consumer: str, lease_valid: Callable[[int], bool]) -> None:
        self.store = store
        self.settings = settings
        self.deliverer = deliverer
        self.metrics = metrics
        self.consumer = consumer
        self.lease_valid = lease_valid
        """Whether the lease of a partition is surely still this process's (renewed lately)."""
        self.held: dict[int, Held] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self._signers: dict[str, tuple[tuple[Any, ...], Signer]] = {}
        self._slots = asyncio.Semaphore(max(1, settings.notify_concurrency))
        self._endpoints: dict[str, asyncio.Semaphore] = {}
        self._done: list[_Done] = []
        self._done_ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._healthy_marked: dict[str, float] = {}
        self._failed = store.register_script(FAILED)
        self._stopping = False
        self._lanes_lock = asyncio.Lock()
        self.delivered = 0

    # -- subscriptions ------------------------------------------------------------------

    def set_subscriptions(self, subscriptions: Iterable[Subscription]) -> None:
        """The current subscriptions (revoked owners' left out); wakes the waiting queues."""
        self.subscriptions = {s.id: s for s in subscriptions}
        self._changed.set()
        self._changed = asyncio.Event()

    def _signer(self, sub: Subscription) -> Signer:
        in_force = tuple(sub.secrets_in_force(now_ms()))
        cache_key = (in_force, sub.signing_key)
        cached = self._signers.get(sub.id)
        if cached is None or cached[0] != cache_key:
            cached = self._signers[sub.id] = (cache_key, Signer(in_force, sub.signing_key))
        return cached[1]

    # -- partitions ---------------------------------------------------------------------

    async def adopt(self, partition: int) -> None:
        """Start delivering ``partition``: first what anybody left pending there."""
        held = self.held[partition] = Held(partition)
        await self.ensure_lanes()
        log.info("notify: partition %d taken over, %d pending messages claimed", partition,
                 sum(lane.held for lane in held.lanes.values()))

    async def drop(self, partition: int) -> None:
        """Stop delivering ``partition`` (the lease is lost or handed over): its queues
        stop; what they held stays pending in the group for the next holder."""
        held = self.held.pop(partition, None)
        if held is None:
            return
        tasks = [t for lane in held.lanes.values() for t in lane.tasks.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def ensure_lanes(self) -> None:
        """A lane (with its stream and group) for every subscription in every partition held,
        each taking over what is pending in its stream before it is read. One at a time: a
        lane claimed twice would hold its messages twice, and send one after its successor."""
        async with self._lanes_lock:
            await self._ensure_lanes()

    async def _ensure_lanes(self) -> None:
        created: list[str] = []
        for held in list(self.held.values()):
            for sub_id in self.subscriptions:
                if sub_id not in held.lanes:
                    lane = Lane(sub_id, held.partition, StoreKeys.outbox(sub_id, held.partition))
                    held.lanes[sub_id] = lane
                    created.append(lane.stream)
            for sub_id in [s for s in held.lanes if s not in self.subscriptions]:
                lane = held.lanes.pop(sub_id)
                for task in lane.tasks.values():
                    task.cancel()
        if created:
            async with self.store.pipeline(transaction=False) as pipe:
                for stream in created:
                    pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
                results = await pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                    raise result
        for held in list(self.held.values()):
            for lane in list(held.lanes.values()):
                if not lane.claimed and self.held.get(held.partition) is held:
                    await self._claim(lane)
                    lane.claimed = True

    async def _claim(self, lane: Lane) -> None:
        """Take over what is pending in ``lane``'s stream, in order, with its retry state."""
        start = "0-0"
        claimed: list[Message] = []
        while True:
            reply = await self.store.xautoclaim(lane.stream, GROUP, self.consumer, 0, start, count=CLAIM_COUNT)
            start, entries = reply[0], reply[1]
            for entry_id, raw in entries:
                message = Message.from_entry(lane.sub, lane.partition, entry_id, raw)
                if message is not None:
                    claimed.append(message)
            if start in (b"0-0", "0-0"):
                break
        if not claimed:
            return
        states = await self.store.hmget(StoreKeys.retry(lane.sub),
                                        [retry_field(lane.partition, m.entry_id) for m in claimed])
        for message, state in zip(claimed, states):
            if state:
                attempts, _first, next_ms = state.decode().split()
                message.attempts, message.next_ms = int(attempts), int(next_ms)
        for message in claimed:
            self._push(lane, message)

    def _push(self, lane: Lane, message: Message) -> None:
        queue = lane.queues.get(message.key)
        if queue is None:
            queue = lane.queues[message.key] = deque()
        queue.append(message)
        lane.held += 1
        if message.key not in lane.tasks:
            lane.tasks[message.key] = asyncio.get_running_loop().create_task(
                self._work(lane, message.key), name=f"notify-{lane.sub}-{lane.partition}")

    # -- reading ------------------------------------------------------------------------

    async def read_once(self) -> int:
        """One XREADGROUP over the streams of every partition held whose subscription
        is active and whose lane has room. Returns the messages read."""
        lanes = {lane.stream: lane for held in list(self.held.values()) for lane in held.lanes.values()
                 if lane.claimed and not lane.full and self._deliverable(lane.sub)}
        if not lanes:
            await asyncio.sleep(READ_BLOCK_MS / 1000)
            return 0
        try:
            reply = await self.store.xreadgroup(GROUP, self.consumer, {s: ">" for s in lanes}, count=READ_COUNT,
                                                block=READ_BLOCK_MS)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_lanes()  # a stream purged or not made yet: make it, read again
            return 0
        read = 0
        for stream, entries in reply or []:
            lane = lanes.get(stream.decode() if isinstance(stream, bytes) else stream)
            if lane is None:
                continue
            for entry_id, raw in entries:
                message = Message.from_entry(lane.sub, lane.partition, entry_id, raw)
                if message is not None:
                    self._push(lane, message)
                    read += 1
        return read

    def _deliverable(self, sub_id: str) -> bool:
        sub = self.subscriptions.get(sub_id)
        return sub is not None and sub.status == "active"

    # -- one permit's queue -------------------------------------------------------------

    async def _wait_for_change(self, timeout_s: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()

    async def _work(self, lane: Lane, key: str) -> None:
        """Send the queue of one permit, head first, until it is empty."""
        queue = lane.queues[key]
        try:
            while queue and not self._stopping:
                held = self.held.get(lane.partition)
                if held is None or held.lanes.get(lane.sub) is not lane:
                    return  # the partition was dropped: the next holder sends what is left
                sub = self.subscriptions.get(lane.sub)
                if sub is None:
                    return  # deleted (or its key revoked): its streams are purged
                try:
                    await self._step(lane, queue, held, sub)
                except REDIS_UNAVAILABLE as exc:
                    # The store is away: the head stays (pending in the group) and is sent
                    # again once the store answers: at least once, still in order.
                    log.warning("notify: store unreachable while delivering (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(1.0)
                except Exception:
                    # Never die with messages queued: no one else would send this permit's
                    # queue (its messages stay pending to this consumer) until another came.
                    log.exception("notify: delivery step failed unexpectedly (subscription %s, partition %d); "
                                  "retrying", lane.sub, lane.partition)
                    await asyncio.sleep(1.0)
        finally:
            # (no await between the loop's last check and here: nothing was pushed meanwhile)
            if lane.tasks.get(key) is asyncio.current_task():
                del lane.tasks[key]
            if not queue:
                lane.queues.pop(key, None)

    async def _step(self, lane: Lane, queue: deque[Message], held: Held, sub: Subscription) -> None:
        """One attempt at the head of ``queue``, or one wait before it."""
        message = queue[0]
        now = now_ms()
        window_s = self.settings.notify_retry_window_s
        if now - message.enqueued_ms >= window_s * 1000:
            await self._dead(lane, message, f"not delivered within {window_s:.0f} s ({message.attempts} attempts)", sub)
            self._pop(lane, queue)
            return
        if sub.status != "active":
            await self._wait_for_change(5.0)  # paused: wait, in order, for the owner to resume it
            return
        if message.next_ms > now:
            await self._wait_for_change(min(1.0, (message.next_ms - now) / 1000))
            return
        if not self.lease_valid(held.partition):
            await asyncio.sleep(0.2)  # the lease is being renewed, or lost: do not send on it
            return
        endpoint = self._endpoints.get(sub.id)
        if endpoint is None:
            endpoint = self._endpoints[sub.id] = asyncio.Semaphore(PER_ENDPOINT)
        async with endpoint, self._slots:
            stamp = int(time.time())
            attempt = await self.deliverer.send(
                sub.url, self._signer(sub).headers(message.webhook_id, stamp, message.body), message.body)
        message.attempts += 1
        if attempt.ok:
            await self._delivered(lane, message, attempt)
            self._pop(lane, queue)
        else:
            await self._retry_later(lane, message, attempt, sub)

    def _pop(self, lane: Lane, queue: deque[Message]) -> None:
        queue.popleft()
        lane.held -= 1

    # -- outcomes -----------------------------------------------------------------------

    def _attempt_fields(self, message: Message, attempt: Attempt, outcome: str) -> dict[str, Any]:
        return {"t": now_ms(), "i": message.webhook_id, "y": message.type, "pn": message.key,
                "n": message.attempts, "outcome": outcome, "status": attempt.status or "",
                "error": attempt.error, "ms": round(attempt.duration_s * 1000, 1), "answer": attempt.excerpt}

    async def _delivered(self, lane: Lane, message: Message, attempt: Attempt) -> None:
        """Acknowledge (batched with the other queues'); returns once it is written."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done.append(_Done(lane, message, attempt, future))
        self._done_ready.set()
        await future

    async def ack_loop(self) -> None:
        """Writes the acknowledgements of every queue in one transaction per round."""
        while True:  # until cancelled, after the queues stopped (they wait on it)
            await self._done_ready.wait()
            self._done_ready.clear()
            batch, self._done = self._done, []
            if not batch:
                continue
            try:
                await self._ack(batch)
            except REDIS_UNAVAILABLE as exc:
                for done in batch:
                    if not done.future.done():
                        done.future.set_exception(exc)
                continue
            for done in batch:
                if not done.future.done():
                    done.future.set_result(None)

    async def _ack(self, batch: list[_Done]) -> None:
        now = now_ms()
        now_s = time.time()
        async with self.store.pipeline(transaction=True) as pipe:
            for done in batch:
                message, lane = done.message, done.lane
                pipe.xack(lane.stream, GROUP, message.entry_id)
                pipe.xdel(lane.stream, message.entry_id)
                if message.attempts > 1:
                    pipe.hdel(StoreKeys.retry(lane.sub), retry_field(lane.partition, message.entry_id))
                pipe.xadd(StoreKeys.attempts(lane.sub), self._attempt_fields(message, done.attempt, "delivered"),
                          maxlen=ATTEMPTS_KEPT, approximate=True)
            for sub_id in {d.lane.sub for d in batch}:
                sub = self.subscriptions.get(sub_id)
                # the endpoint's health: reset after failures, else refreshed now and then
                if sub is not None and (sub.fails or now_s - self._healthy_marked.get(sub_id, 0) > 10):
                    pipe.hset(StoreKeys.sub(sub_id), mapping={"fails": 0, "fail_since_ms": 0, "last_success_ms": now})
                    self._healthy_marked[sub_id] = now_s
                    if sub.fails:
                        self.subscriptions[sub_id] = _with(sub, fails=0, fail_since_ms=0)
            await pipe.execute()
        counted: dict[str, int] = {}
        for done in batch:
            counted[done.lane.sub] = counted.get(done.lane.sub, 0) + 1
            if done.message.event_time:
                self.metrics.delivery_latency.observe(max(0.0, now_s - done.message.event_time))
        for sub_id, count in counted.items():
            self.metrics.attempts.labels(sub_id, "delivered").inc(count)
        self.delivered += len(batch)

    async def _retry_later(self, lane: Lane, message: Message, attempt: Attempt, sub: Subscription) -> None:
        settings = self.settings
        delay = backoff_s(message.attempts, settings.notify_retry_base_s, settings.notify_retry_cap_s)
        if attempt.retry_after_s is not None:
            delay = max(delay, min(attempt.retry_after_s, settings.notify_retry_cap_s))
        now = now_ms()
        message.next_ms = now + int(delay * 1000)
        async with self.store.pipeline(transaction=True) as pipe:
            pipe.hset(StoreKeys.retry(lane.sub), retry_field(lane.partition, message.entry_id),
                      f"{message.attempts} {message.enqueued_ms} {message.next_ms}")
            pipe.xadd(StoreKeys.attempts(lane.sub), self._attempt_fields(message, attempt, "failed"),
                      maxlen=ATTEMPTS_KEPT, approximate=True)
            await pipe.execute()
        paused = await self._failed(keys=[StoreKeys.sub(lane.sub), StoreKeys.subs_version], args=[
            now, attempt.error[:300], settings.notify_pause_after_failures,
            int(settings.notify_pause_after_s * 1000), "1" if attempt.gone else "0"])
        self.metrics.attempts.labels(lane.sub, "failed").inc()
        self.metrics.failures.labels(lane.sub, attempt.error.split(" (")[0][:40]).inc()
        if paused:
            log.warning("notify: endpoint %s paused after failing (%s)", lane.sub, attempt.error)
            self.subscriptions[lane.sub] = _with(sub, status="paused", paused_reason=attempt.error)
        else:
            self.subscriptions[lane.sub] = _with(sub, fails=sub.fails + 1)

    async def _dead(self, lane: Lane, message: Message, reason: str, sub: Subscription) -> None:
        fields = {"s": lane.sub, "i": message.webhook_id, "y": message.type, "k": message.key, "b": message.body,
                  "e": message.enqueued_ms, "t": repr(message.event_time), "n": message.attempts,
                  "reason": reason, "dead_ms": now_ms(), "last_error": sub.last_error}
        async with self.store.pipeline(transaction=True) as pipe:
            pipe.xadd(StoreKeys.dead, fields, maxlen=DEAD_LETTERS_KEPT, approximate=True)
            pipe.xack(lane.stream, GROUP, message.entry_id)
            pipe.xdel(lane.stream, message.entry_id)
            pipe.hdel(StoreKeys.retry(lane.sub), retry_field(lane.partition, message.entry_id))
            pipe.xadd(StoreKeys.attempts(lane.sub), self._attempt_fields(
                message, Attempt(False, None, reason, 0.0), "dead-lettered"), maxlen=ATTEMPTS_KEPT, approximate=True)
            await pipe.execute()
        self.metrics.dead_lettered.labels(lane.sub).inc()
        log.warning("notify: a message to %s was dead-lettered: %s", lane.sub, reason)

    async def stop(self, grace_s: float = 10.0) -> None:
        """A clean stop: each queue finishes the attempt it is making (so that a receiver
        that got a message also has it acknowledged), then the partitions are dropped."""
        self._stopping = True
        self._changed.set()  # wake the queues that wait
        tasks = [t for held in self.held.values() for lane in held.lanes.values() for t in lane.tasks.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        for partition in list(self.held):
            await self.drop(partition)


def _with(sub: Subscription, **changes: Any) -> Subscription:
    return msgspec.structs.replace(sub, **changes)
