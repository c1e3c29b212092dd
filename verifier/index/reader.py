"""The reading side of the permit index: used by the API (asyncio) and by tools (sync).

Readers never write. Every read checks, in the same command or pipeline that reads
the data, that the generation it read is still the live one (``{ns}:current``);
a generation is only deleted after the switch away from it, so "still live after
the read" proves the read saw it complete. On a switch the reader retries on the new
generation. No live generation at all: :class:`IndexNotReady`, never "not found".
"""

from __future__ import annotations

import asyncio
import logging
from zlib import crc32
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec
import redis

from verifier.lib.redis_client import KeyRun, packs_key_runs

from .errors import IndexNotReady, IndexUnavailable
from .keys import DEFAULT_NAMESPACE, KeyLayout, Pointer
from .records import PermitRecord, decode_record
from .scripts import LOOKUP

__all__ = ["Freshness", "LookupBy", "PermitIndex", "SyncPermitIndex", "choose_record"]

log = logging.getLogger(__name__)

_decoder = msgspec.msgpack.Decoder(PermitRecord)

LookupBy = Literal["pn", "ssn", "cn"]

# Errors that mean "Redis cannot answer now". AttributeError is on the list on
# purpose: redis-py's asyncio cluster client was seen raising
# "'NoneType' object has no attribute 'writelines'" for seconds after a primary died.
_UNAVAILABLE = (redis.RedisError, OSError, TimeoutError, asyncio.TimeoutError, AttributeError)

_MAX_SWITCH_RETRIES = 4
_META_FIELDS = ("state", "seq", "as_of", "upstream_time", "count", "hb_seq")


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


class _Plan:
    """Key building and parsing shared by the sync and asyncio readers."""

    def __init__(self, namespace: str) -> None:
        self.keys = KeyLayout(namespace)

    def record_keys(self, pointer: Pointer, pns: Sequence[str]) -> list[str]:
        # str keys: the client encodes them (UTF-8) while packing, in C with hiredis;
        # a bulk look-up's 10,000 pn.encode() calls cost more than that
        prefix = self.keys.record_prefix(pointer.generation).decode()
        return [prefix + pn for pn in pns]

    def lookup_args(self, pointer: Pointer, by: LookupBy, ids: Sequence[str]) -> tuple[list[bytes], list[bytes]]:
        """KEYS and ARGV of the LOOKUP script for ``ids``."""
        generation = pointer.generation
        prefix = self.keys.ssn_prefix(generation) if by == "ssn" else self.keys.cn_prefix(generation)
        mask = pointer.buckets - 1
        idents = [ident.encode() for ident in ids]
        # keys.bucket_of, inlined: up to 10,000 ids a call
        keys = [self.keys.current, *[prefix + b"%d" % (crc32(ident) & mask) for ident in idents]]
        return keys, [pointer.raw, self.keys.record_prefix(generation), *idents]

    def lookup_result(self, by: LookupBy, ids: Sequence[str], out: list[Any]) -> dict[str, PermitRecord] | None:
        """Records by id from the LOOKUP script's answer; None when the generation switched."""
        if out and out[0] == -1:
            return None
        decode = self.decode
        found: dict[str, PermitRecord] = {}
        at = 0
        for ident in ids:
            count = out[at]
            at += 1
            if count == 0:
                continue
            if count == 1:
                record = decode(out[at])
                # A stale mapping (a record without that id) is ignored, as in choose_record.
                if record.ssn == ident if by == "ssn" else record.card_status(ident) is not None:
                    found[ident] = record
            else:
                chosen = choose_record(by, ident, [decode(raw) for raw in out[at:at + count]])
                if chosen is not None:
                    found[ident] = chosen
            at += count
        return found

    @staticmethod
    def decode_many(pns: Sequence[str], values: Sequence[bytes | None]) -> dict[str, PermitRecord]:
        decode = _decoder.decode  # no wrapper per record: this is the bulk look-up's hot loop
        try:
            return {pn: decode(raw) for pn, raw in zip(pns, values) if raw is not None}
        # a corrupt record is an outage, not "not found" (msgspec reports bad UTF-8 as UnicodeDecodeError)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise IndexUnavailable(f"undecodable permit record in the index: {exc}") from exc

    @staticmethod
    def decode(raw: bytes) -> PermitRecord:
        try:
            return decode_record(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # a corrupt record is an outage, not "not found"
            raise IndexUnavailable(f"undecodable permit record in the index: {exc}") from exc

    def freshness(self, pointer: Pointer, meta: list[bytes | None], now: tuple[int, int]) -> Freshness:
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


def _check_by(by: str) -> None:
    if by not in ("pn", "ssn", "cn"):
        raise ValueError(f"look-up by {by!r}: expected 'pn', 'ssn' or 'cn'")


class PermitIndex:
    """Asyncio reader (the API). ``redis`` from ``verifier.lib.redis_client.async_client``.

    Raises :class:`IndexUnavailable` when Redis cannot answer and
    :class:`IndexNotReady` when there is no complete index.
    """

    def __init__(self, redis_client: Any, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.redis = redis_client
        self._plan = _Plan(namespace)
        self.keys = self._plan.keys
        self._pointer: Pointer | None = None
        self._lookup = redis_client.register_script(LOOKUP)
        self._key_runs = packs_key_runs(redis_client)

    async def _io(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except _UNAVAILABLE as exc:
            raise IndexUnavailable(f"redis unreachable: {exc!r}") from exc

    async def _live_pointer(self) -> Pointer:
        if self._pointer is None:
            self._pointer = Pointer.parse(await self._io(self.redis.get(self.keys.current)))
            if self._pointer is None:
                raise IndexNotReady("no live generation (flushed or new Redis, or first load unfinished)")
        return self._pointer

    def _switched(self, seen: bytes | None) -> None:
        self._pointer = Pointer.parse(seen)
        if self._pointer is None:
            raise IndexNotReady("no live generation (flushed or new Redis, or first load unfinished)")

    async def get(self, pn: str) -> PermitRecord | None:
        """The permit ``pn``, or None when the (complete) index has no such permit."""
        return (await self.get_many("pn", [pn])).get(pn)

    async def get_many(self, by: LookupBy, ids: Sequence[str]) -> dict[str, PermitRecord]:
        """Bulk look-up by permit number, ssn or card number: ``{id: record}`` for the ids
        found (an id missing from the result is not in the index)."""
        _check_by(by)
        wanted = list(dict.fromkeys(ids))
        for _ in range(_MAX_SWITCH_RETRIES):
            pointer = await self._live_pointer()
            if by == "pn":
                # the pointer first: the keys then make one uniform run for the client to pack
                values = await self._io(self.redis.mget([self.keys.current, *self._plan.record_keys(pointer, wanted)]))
                if values[0] != pointer.raw:
                    self._switched(values[0])
                    continue
                return self._plan.decode_many(wanted, values[1:])
            keys, args = self._plan.lookup_args(pointer, by, wanted)
            out = await self._io(self._lookup(keys=keys, args=args))
            found = self._plan.lookup_result(by, wanted, out)
            if found is None:
                self._switched(out[1])
                continue
            return found
        raise IndexUnavailable("the index switched generations repeatedly during a read")

    async def get_many_stored(self, pns: Sequence[str]) -> list[bytes | None]:
        """The stored records of ``pns`` in their order, undecoded (None: no such permit),
        read from the live generation with the same check as :meth:`get_many`: for a
        caller that renders the msgpack itself (the API's bulk look-up by pn). A permit
        number asked twice is read twice (cheaper than looking for repeats)."""
        for _ in range(_MAX_SWITCH_RETRIES):
            pointer = await self._live_pointer()
            if self._key_runs:  # the keys packed straight from the permit numbers
                run = KeyRun(self.keys.record_prefix(pointer.generation).decode(), pns)
                values = await self._io(self.redis.execute_command("MGET", self.keys.current, run))
            else:
                values = await self._io(self.redis.mget([self.keys.current, *self._plan.record_keys(pointer, pns)]))
            if values[0] != pointer.raw:
                self._switched(values[0])
                continue
            del values[0]
            return values  # type: ignore[no-any-return]
        raise IndexUnavailable("the index switched generations repeatedly during a read")

    async def freshness(self) -> Freshness:
        """Whether the index is complete, its cursor and how old its last confirmation is.

        Returns ``ready=False`` (rather than raising) when there is no complete index;
        raises :class:`IndexUnavailable` when Redis cannot answer.
        """
        for _ in range(_MAX_SWITCH_RETRIES):
            try:
                pointer = await self._live_pointer()
            except IndexNotReady:
                return _NOT_READY
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(self.keys.meta(pointer.generation), _META_FIELDS)
            pipe.get(self.keys.current)
            meta, seen = await self._io(pipe.execute())
            now = await self._io(self.redis.time())
            if seen != pointer.raw:
                try:
                    self._switched(seen)
                except IndexNotReady:
                    return _NOT_READY
                continue
            return self._plan.freshness(pointer, meta, now)
        raise IndexUnavailable("the index switched generations repeatedly during a read")


class SyncPermitIndex:
    """The same reader over a sync client (tools, ``verifier index check``, tests)."""

    def __init__(self, redis_client: Any, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.redis = redis_client
        self._plan = _Plan(namespace)
        self.keys = self._plan.keys
        self._pointer: Pointer | None = None
        self._lookup = redis_client.register_script(LOOKUP)

    def _io(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _UNAVAILABLE as exc:
            raise IndexUnavailable(f"redis unreachable: {exc!r}") from exc

    def _live_pointer(self) -> Pointer:
        if self._pointer is None:
            self._pointer = Pointer.parse(self._io(self.redis.get, self.keys.current))
            if self._pointer is None:
                raise IndexNotReady("no live generation (flushed or new Redis, or first load unfinished)")
        return self._pointer

    def _switched(self, seen: bytes | None) -> None:
        self._pointer = Pointer.parse(seen)
        if self._pointer is None:
            raise IndexNotReady("no live generation (flushed or new Redis, or first load unfinished)")

    def get(self, pn: str) -> PermitRecord | None:
        return self.get_many("pn", [pn]).get(pn)

    def get_many(self, by: LookupBy, ids: Sequence[str]) -> dict[str, PermitRecord]:
        _check_by(by)
        wanted = list(dict.fromkeys(ids))
        for _ in range(_MAX_SWITCH_RETRIES):
            pointer = self._live_pointer()
            if by == "pn":
                values = self._io(self.redis.mget, [*self._plan.record_keys(pointer, wanted), self.keys.current])
                if values[-1] != pointer.raw:
                    self._switched(values[-1])
                    continue
                return self._plan.decode_many(wanted, values)
            keys, args = self._plan.lookup_args(pointer, by, wanted)
            out = self._io(lambda: self._lookup(keys=keys, args=args))
            found = self._plan.lookup_result(by, wanted, out)
            if found is None:
                self._switched(out[1])
                continue
            return found
        raise IndexUnavailable("the index switched generations repeatedly during a read")

    def freshness(self) -> Freshness:
        for _ in range(_MAX_SWITCH_RETRIES):
            try:
                pointer = self._live_pointer()
            except IndexNotReady:
                return _NOT_READY
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(self.keys.meta(pointer.generation), _META_FIELDS)
            pipe.get(self.keys.current)
            meta, seen = self._io(pipe.execute)
            now = self._io(self.redis.time)
            if seen != pointer.raw:
                try:
                    self._switched(seen)
                except IndexNotReady:
                    return _NOT_READY
                continue
            return self._plan.freshness(pointer, meta, now)
        raise IndexUnavailable("the index switched generations repeatedly during a read")

    def iter_records(self, batch: int = 1000) -> Iterable[PermitRecord]:
        """Every record of the live generation (for ``verifier index check``); raises
        :class:`IndexNotReady` if the generation is switched during the walk."""
        pointer = self._live_pointer()
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
        except _UNAVAILABLE as exc:
            raise IndexUnavailable(f"redis unreachable: {exc!r}") from exc

    def _fetch(self, pointer: Pointer, keys: list[bytes]) -> list[PermitRecord]:
        values = self.redis.mget([*keys, self.keys.current])
        if values[-1] != pointer.raw:
            self._pointer = None
            raise IndexNotReady("the live generation changed during the walk; start again")
        return [self._plan.decode(v) for v in values[:-1] if v is not None]
