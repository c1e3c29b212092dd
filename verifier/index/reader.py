"""The reading side of the permit index: used by the API (asyncio) and by tools (sync).

Readers never write. Every read checks, in the same command or pipeline that reads
the data, that the generation it read is still the live one (``{ns}:current``);
a generation is only deleted after the switch away from it, so "still live after
the read" proves the read saw it complete. On a switch the reader retries on the new
generation. No live generation at all: :class:`IndexNotReady`, never "not found".

Each read is written once, in :class:`_Reads`, as a generator that yields the Redis
call it needs next (a function of no arguments) and is sent the reply; it returns
its result. :class:`PermitIndex` awaits each call and :class:`SyncPermitIndex` makes
it, and that is all either does (the sans-I/O style of h11 and h2), so the two can
not drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from functools import partial
from itertools import compress
from typing import Any, Generic, Literal, TypeVar
from zlib import crc32

import msgspec

from verifier.lib.redis_client import AsyncRedisClient, KeyRun, SyncRedisClient, packs_key_runs
from verifier.lib.redis_errors import REDIS_UNAVAILABLE, redis_unavailable

from .errors import IndexNotReady, IndexUnavailable
from .keys import DEFAULT_NAMESPACE, KeyLayout, Pointer
from .records import PermitRecord
from .scripts import LOOKUP
from .stored import StoredRecordError, decode_stored

__all__ = ["Freshness", "LookupBy", "PermitIndex", "SyncPermitIndex", "choose_record"]

log = logging.getLogger(__name__)

LookupBy = Literal["pn", "ssn", "cn"]

_MAX_SWITCH_RETRIES = 4
_META_FIELDS = ("state", "seq", "as_of", "upstream_time", "count", "hb_seq")

T = TypeVar("T")
Client = TypeVar("Client", SyncRedisClient, AsyncRedisClient)

_Call = Callable[[], Any]
"""One Redis call, not made yet: it returns the reply (sync client) or an awaitable of it."""
_Read = Generator[_Call, Any, T]
"""A read: yields its calls, is sent their replies, returns its result."""


class Freshness(msgspec.Struct, frozen=True):
    """How complete and how fresh the index is."""

    ready: bool
    """A complete generation is live. False: answer STATUS_UNAVAILABLE."""
    generation: int | None
    seq: int | None
    """The upstream sequence number the index is consistent with (its cursor)."""
    as_of: float | None
    """Redis server time (epoch s) when the index was last confirmed consistent with the upstream."""
    lag_s: float | None
    """Seconds since ``as_of``, by the Redis server's clock."""
    upstream_time: float | None = None
    """The upstream's own time stated with the last confirmation."""
    count: int | None = None
    """Permits in the index."""


_NOT_READY = Freshness(ready=False, generation=None, seq=None, as_of=None, lag_s=None)


def choose_record(by: LookupBy, ident: str, records: Iterable[PermitRecord]) -> PermitRecord | None:
    """The permit an ssn or a card number stands for, when several permits share it.

    Only records that really carry the id count (a stale mapping is ignored). A card
    number prefers the permit on which that card is active; then an active permit over
    a cancelled one; then the latest end of validity; then the highest version.
    """
    best: PermitRecord | None = None
    best_key: tuple[Any, ...] = ()
    for record in records:
        if by == "ssn":
            if record.ssn != ident:
                continue
            key: tuple[Any, ...] = (record.status == "active", record.vt, record.vf, record.v, record.pn)
        else:
            status = record.card_status(ident)
            if status is None:
                continue
            key = (status == "active", record.status == "active", record.vt, record.vf, record.v, record.pn)
        if best is None or key > best_key:
            best, best_key = record, key
    return best


def _check_by(by: str) -> None:
    if by not in ("pn", "ssn", "cn"):
        raise ValueError(f"look-up by {by!r}: expected 'pn', 'ssn' or 'cn'")


def _decode(pn: str, raw: bytes) -> PermitRecord:
    try:
        return decode_stored(pn, raw)
    except StoredRecordError as exc:  # a corrupt record is an outage, not "not found"
        raise IndexUnavailable(f"undecodable permit record in the index: {exc}") from exc


class _Reads(Generic[Client]):
    """What both readers do: key building, the generation check and its retries,
    decoding. Every Redis call is yielded (see the module docstring), never made here."""

    def __init__(self, redis_client: Client, namespace: str) -> None:
        self.redis = redis_client
        self.keys = KeyLayout(namespace)
        self.pointer: Pointer | None = None
        """The live generation as last read; re-read when a read finds it switched."""
        self.lookup = redis_client.register_script(LOOKUP)
        self.key_runs = packs_key_runs(redis_client)

    def live_pointer(self) -> _Read[Pointer]:
        if self.pointer is None:
            self.switched((yield partial(self.redis.get, self.keys.current)))
        assert self.pointer is not None
        return self.pointer

    def switched(self, seen: bytes | None) -> None:
        self.pointer = Pointer.parse(seen)
        if self.pointer is None:
            raise IndexNotReady("no live generation (flushed or new Redis, or first load unfinished)")

    def record_keys(self, pointer: Pointer, pns: Sequence[str]) -> list[str]:
        # str keys: the client encodes them (UTF-8) while packing, in C with hiredis;
        # a bulk look-up's 10,000 pn.encode() calls cost more than that
        prefix = self.keys.record_prefix(pointer.generation).decode()
        return [prefix + pn for pn in pns]

    def get_many(self, by: LookupBy, ids: Sequence[str]) -> _Read[dict[str, PermitRecord]]:
        _check_by(by)
        wanted = list(dict.fromkeys(ids))
        for _ in range(_MAX_SWITCH_RETRIES):
            pointer = self.pointer or (yield from self.live_pointer())  # no sub-generator when known
            if by == "pn":
                values = yield from self.read_records(pointer, wanted)
                if values is None:
                    continue
                return self.decode_many(wanted, values)
            # Two round trips: the ids' permit numbers (the LOOKUP script, which checks the
            # generation), then their records (one MGET, which checks it again).
            keys, args = self.lookup_args(pointer, by, wanted)
            out = yield partial(self.lookup, keys=keys, args=args)
            if out and out[0] == -1:
                self.switched(out[1])
                continue
            hit_ids, pns, spans = self.mapped_pns(wanted, out)
            values = yield from self.read_records(pointer, pns)
            if values is None:
                continue
            return self.lookup_result(by, hit_ids, pns, spans, values)
        raise IndexUnavailable("the index switched generations repeatedly during a read")

    def read_records(self, pointer: Pointer, pns: Sequence[str]) -> _Read[list[bytes | None] | None]:
        """The stored records of ``pns`` from ``pointer``'s generation, in order; None (and
        the pointer re-read) when that generation is no longer the live one."""
        if self.key_runs:  # the keys packed straight from the permit numbers
            run = KeyRun(self.keys.record_prefix(pointer.generation).decode(), pns)
            values = yield partial(self.redis.execute_command, "MGET", self.keys.current, run)
        else:
            # the pointer first: the keys then make one uniform run for the client to pack
            values = yield partial(self.redis.mget, [self.keys.current, *self.record_keys(pointer, pns)])
        if values[0] != pointer.raw:
            self.switched(values[0])
            return None
        del values[0]
        return values  # type: ignore[no-any-return]

    def get_many_stored(self, pns: Sequence[str]) -> _Read[list[bytes | None]]:
        for _ in range(_MAX_SWITCH_RETRIES):
            pointer = self.pointer or (yield from self.live_pointer())
            values = yield from self.read_records(pointer, pns)
            if values is not None:
                return values
        raise IndexUnavailable("the index switched generations repeatedly during a read")

    def freshness(self) -> _Read[Freshness]:
        for _ in range(_MAX_SWITCH_RETRIES):
            try:
                pointer = yield from self.live_pointer()
            except IndexNotReady:
                return _NOT_READY
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(self.keys.meta(pointer.generation), _META_FIELDS)
            pipe.get(self.keys.current)
            meta, seen = yield pipe.execute
            now = yield self.redis.time
            if seen != pointer.raw:
                try:
                    self.switched(seen)
                except IndexNotReady:
                    return _NOT_READY
                continue
            return self.freshness_of(pointer, meta, now)
        raise IndexUnavailable("the index switched generations repeatedly during a read")

    def lookup_args(self, pointer: Pointer, by: LookupBy, ids: Sequence[str]) -> tuple[list[bytes], list[bytes]]:
        """KEYS and ARGV of the LOOKUP script for ``ids``."""
        generation = pointer.generation
        prefix = self.keys.ssn_prefix(generation) if by == "ssn" else self.keys.cn_prefix(generation)
        mask = pointer.buckets - 1
        idents = [ident.encode() for ident in ids]
        # keys.bucket_of and keys.lookup_field, inlined: up to 10,000 ids a call
        if pointer.hashed:
            crcs = [crc32(ident) for ident in idents]
            keys = [self.keys.current, *[prefix + b"%d" % (crc & mask) for crc in crcs]]
            return keys, [pointer.raw, self.keys.record_prefix(generation), *crcs]
        keys = [self.keys.current, *[prefix + b"%d" % (crc32(ident) & mask) for ident in idents]]
        return keys, [pointer.raw, self.keys.record_prefix(generation), *idents]

    @staticmethod
    def mapped_pns(ids: Sequence[str], out: list[Any]) -> tuple[list[str], list[str], list[int] | None]:
        """From the LOOKUP script's answer: the ids that have a mapping, the permit numbers
        to read (in the order of those ids), and ``spans`` (how many permit numbers each
        of those ids has), or None when each has one (nearly always)."""
        hit_ids = list(compress(ids, out))
        held = list(filter(None, out))
        try:
            # one join, one decode and one split for all: ~1 ms less than 10,000 decodes
            pns = b" ".join(held).decode().split(" ")
        except UnicodeDecodeError as exc:  # a corrupt mapping is an outage, not "not found"
            raise IndexUnavailable(f"undecodable look-up mapping in the index: {exc}") from exc
        if len(pns) == len(held):
            return hit_ids, pns, None
        return hit_ids, pns, [value.count(b" ") + 1 for value in held]

    @staticmethod
    def lookup_result(
        by: LookupBy, ids: Sequence[str], pns: Sequence[str], spans: Sequence[int] | None,
        values: Sequence[bytes | None],
    ) -> dict[str, PermitRecord]:
        """Records by id, from :meth:`mapped_pns` and the records read for its ``pns``. A
        stale mapping (a record gone, or one without the id asked for) is ignored, as in
        :func:`choose_record`."""
        found: dict[str, PermitRecord] = {}
        decode = decode_stored
        try:
            if spans is None:
                if by == "ssn":
                    for ident, pn, raw in zip(ids, pns, values):
                        if raw is not None:
                            record = decode(pn, raw)
                            if record.ssn == ident:
                                found[ident] = record
                else:
                    for ident, pn, raw in zip(ids, pns, values):
                        if raw is not None:
                            record = decode(pn, raw)
                            for card in record.cards:
                                if card.cn == ident:
                                    found[ident] = record
                                    break
                return found
            at = 0
            for ident, span in zip(ids, spans):
                records = [decode(pn, raw) for pn, raw in zip(pns[at:at + span], values[at:at + span])
                           if raw is not None]
                at += span
                chosen = choose_record(by, ident, records)
                if chosen is not None:
                    found[ident] = chosen
        except StoredRecordError as exc:  # a corrupt record is an outage, not "not found"
            raise IndexUnavailable(f"undecodable permit record in the index: {exc}") from exc
        return found

    @staticmethod
    def decode_many(pns: Sequence[str], values: Sequence[bytes | None]) -> dict[str, PermitRecord]:
        decode = decode_stored  # no wrapper per record: this is the bulk look-up's hot loop
        try:
            return {pn: decode(pn, raw) for pn, raw in zip(pns, values) if raw is not None}
        except StoredRecordError as exc:  # a corrupt record is an outage, not "not found"
            raise IndexUnavailable(f"undecodable permit record in the index: {exc}") from exc

    @staticmethod
    def freshness_of(pointer: Pointer, meta: list[bytes | None], now: tuple[int, int]) -> Freshness:
        fields = dict(zip(_META_FIELDS, meta))
        if fields["state"] != b"live":
            return _NOT_READY
        server_now = now[0] + now[1] / 1e6
        as_of = float(fields["as_of"]) if fields["as_of"] else None
        return Freshness(
            ready=True,
            generation=pointer.generation,
            seq=int(fields["seq"] or 0),
            as_of=as_of,
            lag_s=max(0.0, server_now - as_of) if as_of is not None else None,
            upstream_time=float(fields["upstream_time"]) if fields["upstream_time"] else None,
            count=int(fields["count"] or 0),
        )


class PermitIndex:
    """Asyncio reader (the API). ``redis`` from ``verifier.lib.redis_client.async_client``.

    Raises :class:`IndexUnavailable` when Redis cannot answer and
    :class:`IndexNotReady` when there is no complete index.
    """

    def __init__(self, redis_client: AsyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.redis = redis_client
        self._reads = _Reads(redis_client, namespace)
        self.keys = self._reads.keys

    async def _run(self, read: _Read[T]) -> T:
        reply: Any = None
        while True:
            try:
                call = read.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply = await call()
            except REDIS_UNAVAILABLE as exc:
                raise redis_unavailable(exc, IndexUnavailable) from exc

    async def get(self, pn: str) -> PermitRecord | None:
        """The permit ``pn``, or None when the (complete) index has no such permit."""
        return (await self._run(self._reads.get_many("pn", [pn]))).get(pn)

    async def get_many(self, by: LookupBy, ids: Sequence[str]) -> dict[str, PermitRecord]:
        """Bulk look-up by permit number, ssn or card number: ``{id: record}`` for the ids
        found (an id missing from the result is not in the index)."""
        return await self._run(self._reads.get_many(by, ids))

    async def get_many_stored(self, pns: Sequence[str]) -> list[bytes | None]:
        """The stored records of ``pns`` in their order, undecoded (None: no such permit),
        read from the live generation with the same check as :meth:`get_many`: for a
        caller that renders the msgpack itself (the API's bulk look-up by pn). A permit
        number asked twice is read twice (cheaper than looking for repeats)."""
        return await self._run(self._reads.get_many_stored(pns))

    async def freshness(self) -> Freshness:
        """Whether the index is complete, its cursor and how old its last confirmation is.

        Returns ``ready=False`` (rather than raising) when there is no complete index;
        raises :class:`IndexUnavailable` when Redis cannot answer.
        """
        return await self._run(self._reads.freshness())


class SyncPermitIndex:
    """The same reader over a sync client (tools, ``verifier index check``, tests)."""

    def __init__(self, redis_client: SyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.redis = redis_client
        self._reads = _Reads(redis_client, namespace)
        self.keys = self._reads.keys

    def _run(self, read: _Read[T]) -> T:
        reply: Any = None
        while True:
            try:
                call = read.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply = call()
            except REDIS_UNAVAILABLE as exc:
                raise redis_unavailable(exc, IndexUnavailable) from exc

    def get(self, pn: str) -> PermitRecord | None:
        return self._run(self._reads.get_many("pn", [pn])).get(pn)

    def get_many(self, by: LookupBy, ids: Sequence[str]) -> dict[str, PermitRecord]:
        return self._run(self._reads.get_many(by, ids))

    def get_many_stored(self, pns: Sequence[str]) -> list[bytes | None]:
        return self._run(self._reads.get_many_stored(pns))

    def freshness(self) -> Freshness:
        return self._run(self._reads.freshness())

    def iter_records(self, batch: int = 1000) -> Iterator[PermitRecord]:
        """Every record of the live generation (for ``verifier index check`` and the Status
        Lists); raises :class:`IndexNotReady` if the generation is switched during the walk,
        or is gone (a walk of a flushed generation finds no keys: it must not pass for empty)."""
        self._reads.pointer = None  # the generation live now, not the one read last
        pointer = self._run(self._reads.live_pointer())
        match = self.keys.record_prefix(pointer.generation) + b"*"
        pending: list[bytes] = []
        try:
            for key in self.redis.scan_iter(match=match, count=batch):
                pending.append(key)
                if len(pending) >= batch:
                    yield from self._fetch(pointer, pending)
                    pending = []
            if pending:
                yield from self._fetch(pointer, pending)
            elif self.redis.get(self.keys.current) != pointer.raw:
                self._reads.pointer = None
                raise IndexNotReady("the live generation changed during the walk; start again")
        except REDIS_UNAVAILABLE as exc:
            raise redis_unavailable(exc, IndexUnavailable) from exc

    def _fetch(self, pointer: Pointer, keys: list[bytes]) -> list[PermitRecord]:
        values = self.redis.mget([*keys, self.keys.current])
        if values[-1] != pointer.raw:
            self._reads.pointer = None
            raise IndexNotReady("the live generation changed during the walk; start again")
        skip = len(self.keys.record_prefix(pointer.generation))
        return [_decode(key[skip:].decode(errors="replace"), v) for key, v in zip(keys, values) if v is not None]
