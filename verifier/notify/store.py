"""The notifications' part of the store of record: what cannot be rebuilt from the upstream.

Subscriptions and their secrets, the outbox, delivery attempts, dead letters,
reminder "sent" marks, replay requests and the notifier's cursors live in the store
of record (``Settings.store_url_or_index``: its own Redis in production, the index's
when none is set), always through a client of its own, never assumed to be the
index's. The webhooks API and the CLI use this module; so does the notifier. Every
key shares the hash tag ``{pvn}`` (one slot of a Redis Cluster), so that each step of
the outbox is one atomic script::

    {pvn}:subs                set      subscription ids
    {pvn}:sub:<id>            hash     a subscription (Subscription's fields), its secrets and health
    {pvn}:subs:v              counter  bumped at every change of a subscription (notifiers reload)
    {pvn}:deleted             zset     deleted subscription id -> when (their keys are removed later)
    {pvn}:platform:<key id>   hash     an e-card platform key's settings (verified_notices)
    {pvn}:config              hash     partitions (fixed at first start)
    {pvn}:cursors             hash     index -> "<feed> <seq>", audit -> entry id, replays -> entry id
    {pvn}:ob:<id>:<p>         stream   outbox partition p of a subscription (group "dispatch")
    {pvn}:retry:<id>          hash     "<p> <entry id>" -> retry state of a delivery that failed
    {pvn}:attempts:<id>       stream   the subscription's latest delivery attempts (~1,000)
    {pvn}:dead                stream   dead letters (~100,000)
    {pvn}:reminded            hash     "<id> <permit number>" -> "<vt> <days>": the last reminder it was sent
    {pvn}:replays             stream   replay requests; {pvn}:replay:<rid> hash, each one's progress
    {pvn}:leader              string   "<fence>:<owner>" of the leading notifier (fan-out, reminders, ...)
    {pvn}:fence               counter  its fencing tokens
    {pvn}:members             zset     notifier -> last heartbeat (ms)
    {pvn}:lease:<p>           string   the notifier that delivers partition p

The owner key's record (``pv:apikey:<id>``, verifier.api.auth.keys) is read here only
to see whether it was revoked: a revoked key's subscriptions get nothing more.
"""

from __future__ import annotations

import secrets
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import msgspec
import redis.exceptions

from verifier.lib.redis_client import AsyncRedisClient

from . import signing

__all__ = [
    "API_KEY_PREFIX",
    "DeadLetter",
    "Owner",
    "StoreKeys",
    "Subscription",
    "NotifyStore",
    "SubscriptionLimit",
]

TAG: Final = "{pvn}"
API_KEY_PREFIX: Final = "pv:apikey:"
"""verifier.api.auth.keys.KEY_PREFIX (tests/notify hold the two together)."""
GROUP: Final = "dispatch"
"""The consumer group of every outbox stream."""
ROTATION_OVERLAP_S: Final = 24 * 3600
"""A rotated-out secret keeps signing this long."""
MAX_SUBSCRIPTIONS_PER_KEY: Final = 20
ATTEMPTS_KEPT: Final = 1000
DEAD_LETTERS_KEPT: Final = 100_000
DEFAULT_PARTITIONS: Final = 16

Status = Literal["active", "paused"]


class StoreKeys:
    """Key names of the notifications in the store of record."""

    subs = f"{TAG}:subs"
    subs_version = f"{TAG}:subs:v"
    deleted = f"{TAG}:deleted"
    config = f"{TAG}:config"
    cursors = f"{TAG}:cursors"
    dead = f"{TAG}:dead"
    reminded = f"{TAG}:reminded"
    replays = f"{TAG}:replays"
    leader = f"{TAG}:leader"
    fence = f"{TAG}:fence"
    members = f"{TAG}:members"

    @staticmethod
    def sub(sub_id: str) -> str:
        return f"{TAG}:sub:{sub_id}"

    @staticmethod
    def outbox(sub_id: str, partition: int) -> str:
        return f"{TAG}:ob:{sub_id}:{partition}"

    @staticmethod
    def retry(sub_id: str) -> str:
        return f"{TAG}:retry:{sub_id}"

    @staticmethod
    def attempts(sub_id: str) -> str:
        return f"{TAG}:attempts:{sub_id}"

    @staticmethod
    def platform(key_id: str) -> str:
        return f"{TAG}:platform:{key_id}"

    @staticmethod
    def replay(replay_id: str) -> str:
        return f"{TAG}:replay:{replay_id}"

    @staticmethod
    def lease(partition: int) -> str:
        return f"{TAG}:lease:{partition}"


class SubscriptionLimit(ValueError):
    """The key holds as many subscriptions as it may."""


class Owner(msgspec.Struct, frozen=True):
    """Who subscribes, and what its key may see (decided by the API's role table)."""

    key_id: str
    role: str
    employers: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()


class Subscription(msgspec.Struct, frozen=True):
    id: str
    key_id: str
    role: str
    url: str
    events: tuple[str, ...]
    employers: tuple[str, ...]
    """Partners: the employers whose permits it hears of (the key's)."""
    fields: tuple[str, ...]
    """The permit fields its messages carry (what the key may see)."""
    description: str
    created_ms: int
    status: Status
    secret: str
    signing_key: str
    previous_secret: str = ""
    previous_secret_until_ms: int = 0
    paused_reason: str = ""
    paused_at_ms: int = 0
    fails: int = 0
    """Failed attempts in a row."""
    fail_since_ms: int = 0
    last_error: str = ""
    last_success_ms: int = 0

    @property
    def public_key(self) -> str:
        return signing.public_key_of(self.signing_key)

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    def secrets_in_force(self, now_ms: int) -> list[str]:
        if self.previous_secret and now_ms < self.previous_secret_until_ms:
            return [self.secret, self.previous_secret]
        return [self.secret]


class DeadLetter(msgspec.Struct, frozen=True):
    id: str
    """The dead letter's own id (its entry in {pvn}:dead)."""
    subscription: str
    webhook_id: str
    type: str
    key: str
    """The permit it is about ('' for a message about none)."""
    attempts: int
    queued_ms: int
    dead_at_ms: int
    reason: str
    last_error: str
    body: bytes
    event_time: float = 0.0


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    text = _text(value)
    return int(float(text)) if text else 0


def _split(value: Any) -> tuple[str, ...]:
    return tuple(p for p in _text(value).split(",") if p)


def decode_subscription(sub_id: str, raw: dict[Any, Any]) -> Subscription | None:
    fields = {_text(k): v for k, v in raw.items()}
    if not fields.get("url"):
        return None
    return Subscription(
        id=sub_id, key_id=_text(fields.get("key_id")), role=_text(fields.get("role")), url=_text(fields["url"]),
        events=_split(fields.get("events")), employers=_split(fields.get("employers")),
        fields=_split(fields.get("fields")), description=_text(fields.get("description")),
        created_ms=_int(fields.get("created_ms")),
        status="paused" if _text(fields.get("status")) == "paused" else "active",
        secret=_text(fields.get("secret")), signing_key=_text(fields.get("signing_key")),
        previous_secret=_text(fields.get("previous_secret")),
        previous_secret_until_ms=_int(fields.get("previous_secret_until_ms")),
        paused_reason=_text(fields.get("paused_reason")), paused_at_ms=_int(fields.get("paused_at_ms")),
        fails=_int(fields.get("fails")), fail_since_ms=_int(fields.get("fail_since_ms")),
        last_error=_text(fields.get("last_error")), last_success_ms=_int(fields.get("last_success_ms")),
    )


def partition_of(ordering_key: str, partitions: int) -> int:
    """The outbox partition of a message: all of one permit's are in one, in order."""
    return zlib.crc32(ordering_key.encode()) % partitions


def now_ms() -> int:
    return int(time.time() * 1000)


def retry_field(partition: int, entry_id: str) -> str:
    return f"{partition} {entry_id}"


class NotifyStore:
    """The notifications' records in the store of record (an asyncio client of its own)."""

    def __init__(self, redis: AsyncRedisClient) -> None:
        self.redis = redis

    # -- configuration ------------------------------------------------------------

    async def partitions(self, wanted: int = DEFAULT_PARTITIONS) -> int:
        """The deployment's partition count: set once (the first caller's), then fixed,
        because a permit's partition must not change under its queued messages."""
        await self.redis.hsetnx(StoreKeys.config, "partitions", max(1, wanted))
        return _int(await self.redis.hget(StoreKeys.config, "partitions"))

    # -- subscriptions --------------------------------------------------------------

    async def create(self, owner: Owner, url: str, events: Sequence[str], description: str = "") -> Subscription:
        """A new subscription, active, with a new secret and signing key (raises
        :class:`SubscriptionLimit`)."""
        mine = [s for s in await self.list(owner.key_id)]
        if len(mine) >= MAX_SUBSCRIPTIONS_PER_KEY:
            raise SubscriptionLimit(f"a key may hold at most {MAX_SUBSCRIPTIONS_PER_KEY} subscriptions")
        sub = Subscription(
            id="wh_" + secrets.token_hex(8), key_id=owner.key_id, role=owner.role, url=url,
            events=tuple(dict.fromkeys(events)), employers=owner.employers, fields=owner.fields,
            description=description, created_ms=now_ms(), status="active",
            secret=signing.new_secret(), signing_key=signing.new_signing_key(),
        )
        record = {
            "key_id": sub.key_id, "role": sub.role, "url": sub.url, "events": ",".join(sub.events),
            "employers": ",".join(sub.employers), "fields": ",".join(sub.fields), "description": description,
            "created_ms": sub.created_ms, "status": sub.status, "secret": sub.secret,
            "signing_key": sub.signing_key, "fails": 0,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(StoreKeys.sub(sub.id), mapping=record)
            pipe.sadd(StoreKeys.subs, sub.id)
            pipe.incr(StoreKeys.subs_version)
            await pipe.execute()
        return sub

    async def get(self, sub_id: str) -> Subscription | None:
        raw = await self.redis.hgetall(StoreKeys.sub(sub_id))
        return decode_subscription(sub_id, raw) if raw else None

    async def all(self) -> list[Subscription]:
        ids = sorted(_text(i) for i in await self.redis.smembers(StoreKeys.subs))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sub_id in ids:
                pipe.hgetall(StoreKeys.sub(sub_id))
            raws = await pipe.execute()
        subs = [decode_subscription(sub_id, raw) for sub_id, raw in zip(ids, raws) if raw]
        return sorted((s for s in subs if s is not None), key=lambda s: s.created_ms)

    async def list(self, key_id: str | None = None) -> list[Subscription]:
        """The subscriptions of one key (None: all of them)."""
        return [s for s in await self.all() if key_id is None or s.key_id == key_id]

    async def version(self) -> int:
        return _int(await self.redis.get(StoreKeys.subs_version))

    async def delete(self, sub_id: str) -> bool:
        """Gone at once for the API and the fan-out; the notifiers drop what it had
        queued, and its outbox, attempts and retry state are removed a little later
        (:meth:`purge_deleted`)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(StoreKeys.subs, sub_id)
            pipe.delete(StoreKeys.sub(sub_id))
            pipe.zadd(StoreKeys.deleted, {sub_id: now_ms()})
            pipe.incr(StoreKeys.subs_version)
            removed, *_ = await pipe.execute()
        return bool(removed)

    async def purge_deleted(self, partitions: int, older_than_ms: int) -> int:
        """Remove the keys of subscriptions deleted before ``older_than_ms``."""
        gone = [_text(i) for i in await self.redis.zrangebyscore(StoreKeys.deleted, 0, older_than_ms)]
        for sub_id in gone:
            keys = [StoreKeys.outbox(sub_id, p) for p in range(partitions)]
            keys += [StoreKeys.retry(sub_id), StoreKeys.attempts(sub_id)]
            await self.redis.unlink(*keys)
            await self.redis.zrem(StoreKeys.deleted, sub_id)
        return len(gone)

    async def rotate_secret(self, sub_id: str) -> Subscription | None:
        """A new secret; the previous one keeps signing for 24 h."""
        sub = await self.get(sub_id)
        if sub is None:
            return None
        until = now_ms() + ROTATION_OVERLAP_S * 1000
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(StoreKeys.sub(sub_id), mapping={
                "secret": signing.new_secret(), "previous_secret": sub.secret, "previous_secret_until_ms": until})
            pipe.incr(StoreKeys.subs_version)
            await pipe.execute()
        return await self.get(sub_id)

    async def resume(self, sub_id: str) -> Subscription | None:
        """An endpoint paused for its failures (or a 410) is tried again."""
        if not await self.redis.exists(StoreKeys.sub(sub_id)):
            return None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(StoreKeys.sub(sub_id), mapping={
                "status": "active", "paused_reason": "", "paused_at_ms": 0, "fails": 0, "fail_since_ms": 0})
            pipe.incr(StoreKeys.subs_version)
            await pipe.execute()
        return await self.get(sub_id)

    async def revoked_owners(self, key_ids: Iterable[str]) -> set[str]:
        """The key ids among ``key_ids`` that were revoked (or no longer exist)."""
        ids = sorted(set(key_ids))
        if not ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hget(API_KEY_PREFIX + key_id, "revoked")
            values = await pipe.execute()
        return {key_id for key_id, value in zip(ids, values) if value is None or _text(value)}

    # -- the e-card platform's setting ------------------------------------------------

    async def verified_notices(self, key_id: str) -> bool:
        return _text(await self.redis.hget(StoreKeys.platform(key_id), "verified_notices")) == "1"

    async def set_verified_notices(self, key_id: str, on: bool) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(StoreKeys.platform(key_id), "verified_notices", "1" if on else "0")
            pipe.incr(StoreKeys.subs_version)
            await pipe.execute()

    async def platforms_with_verified_notices(self, key_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(key_ids))
        if not ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hget(StoreKeys.platform(key_id), "verified_notices")
            values = await pipe.execute()
        return {key_id for key_id, value in zip(ids, values) if _text(value) == "1"}

    # -- what the owner sees ----------------------------------------------------------

    async def attempts(self, sub_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The latest delivery attempts, newest first."""
        entries = await self.redis.xrevrange(StoreKeys.attempts(sub_id), count=limit)
        return [{_text(k): _text(v) for k, v in fields.items()} | {"id": _text(entry_id)}
                for entry_id, fields in entries]

    async def backlog(self, sub_id: str, partitions: int) -> int:
        """Messages queued for the subscription, not yet delivered."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(partitions):
                pipe.xlen(StoreKeys.outbox(sub_id, p))
            return sum(await pipe.execute())

    # -- dead letters -----------------------------------------------------------------

    async def dead_letters(self, sub_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest first; ``sub_id`` narrows them to one subscription."""
        out: list[DeadLetter] = []
        end = "+"
        while len(out) < limit:
            entries = await self.redis.xrevrange(StoreKeys.dead, max=end, count=500)
            for entry_id, fields in entries:
                letter = _dead_letter(entry_id, fields)
                if sub_id is None or letter.subscription == sub_id:
                    out.append(letter)
                    if len(out) >= limit:
                        break
            if len(entries) < 500:
                break
            end = "(" + _text(entries[-1][0])
        return out

    async def dead_letter(self, letter_id: str) -> DeadLetter | None:
        try:
            entries = await self.redis.xrange(StoreKeys.dead, min=letter_id, max=letter_id)
        except redis.exceptions.ResponseError:  # not a stream id
            return None
        return _dead_letter(*entries[0]) if entries else None

    async def resend(self, letters: Sequence[DeadLetter]) -> tuple[list[str], list[str]]:
        """Queue dead letters again (same webhook-id, a fresh retry window), each at the end
        of its permit's queue. Returns (resent, refused: their subscription is gone)."""
        partitions = await self.partitions()
        resent: list[str] = []
        refused: list[str] = []
        for letter in letters:
            if not await self.redis.exists(StoreKeys.sub(letter.subscription)):
                refused.append(letter.id)
                continue
            stream = StoreKeys.outbox(letter.subscription, partition_of(letter.key, partitions))
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, {"i": letter.webhook_id, "y": letter.type, "k": letter.key, "b": letter.body,
                                   "e": now_ms(), "t": repr(letter.event_time)})
                pipe.xdel(StoreKeys.dead, letter.id)
                await pipe.execute()
            resent.append(letter.id)
        return resent, refused

    # -- replay -----------------------------------------------------------------------

    async def request_replay(self, sub_id: str, since_seq: int | None, since_ms: int | None) -> str:
        replay_id = "rp_" + secrets.token_hex(6)
        request = {"id": replay_id, "sub": sub_id, "since_seq": "" if since_seq is None else since_seq,
                   "since_ms": "" if since_ms is None else since_ms}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(StoreKeys.replay(replay_id), mapping={**request, "state": "queued", "requested_ms": now_ms()})
            pipe.expire(StoreKeys.replay(replay_id), 7 * 86400)
            pipe.xadd(StoreKeys.replays, request, maxlen=10_000, approximate=True)
            await pipe.execute()
        return replay_id

    async def replay_status(self, replay_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(StoreKeys.replay(replay_id))
        return {_text(k): _text(v) for k, v in raw.items()} if raw else None


def _dead_letter(entry_id: Any, fields: dict[Any, Any]) -> DeadLetter:
    f = {_text(k): v for k, v in fields.items()}
    return DeadLetter(
        id=_text(entry_id), subscription=_text(f.get("s")), webhook_id=_text(f.get("i")), type=_text(f.get("y")),
        key=_text(f.get("k")), attempts=_int(f.get("n")), queued_ms=_int(f.get("e")),
        dead_at_ms=_int(f.get("dead_ms")), reason=_text(f.get("reason")), last_error=_text(f.get("last_error")),
        body=f.get("b") or b"", event_time=float(_text(f.get("t")) or 0.0),
    )
