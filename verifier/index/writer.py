"""The writing side of the permit index: used by the sync job only (sync redis-py client).

See the package docstring for the key layout and the guarantees.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgspec
import redis

from verifier.lib.redis_client import SyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE, redis_unavailable

from .apply_plan import DEFAULT_STREAM_MAXLEN, apply_call, page_permits, plan_page
from .changes import ChangeMessage, encode_change
from .errors import (
    CursorMismatch,
    GenerationChanged,
    IndexNotReady,
    IndexUnavailable,
    PermitIndexError,
    SnapshotAborted,
    StaleFence,
)
from .keys import DEFAULT_NAMESPACE, KeyLayout, Pointer, buckets_for
from .records import ChangeEvent, PermitRecord, encode_record
from .stored import StoredRecordError, decode_stored, pack_lookup_bucket, prepare_load
from . import scripts

__all__ = ["ApplyResult", "IndexState", "IndexWriter", "SnapshotLoad"]

log = logging.getLogger(__name__)

_SCRIPT_ERRORS: dict[str, type[PermitIndexError]] = {
    "STALE_FENCE": StaleFence,
    "GENERATION_CHANGED": GenerationChanged,
    "SNAPSHOT_ABORTED": SnapshotAborted,
    "GENERATION_EXISTS": PermitIndexError,
    "RECORD_MOVED": PermitIndexError,
    "VERSION_NOT_HIGHER": PermitIndexError,
}

# Records per MSET and mapping buckets per pipeline of a snapshot load.
_MSET_CHUNK = 500
_PIPELINE_COMMANDS = 200

APPLY_CHUNK = 200
"""Events per APPLY script of a large page (see :meth:`IndexWriter.apply_page`): a page of
at least twice as many goes in chunks of about this many, each planned while Redis runs
the one before it."""
APPLY_EDGE = 50
"""The first and the last chunk of a page are this small: Redis idles while the client
plans the first, and the client waits while Redis runs the last."""


def chunk_bounds(events: int) -> list[tuple[int, int]]:
    """``(start, end)`` of the chunks of a page of ``events`` (see :data:`APPLY_CHUNK`)."""
    if events <= 0:
        return []
    bounds: list[tuple[int, int]] = []
    at = min(APPLY_EDGE, events)
    bounds.append((0, at))
    while events - at > APPLY_CHUNK + APPLY_EDGE:
        bounds.append((at, at + APPLY_CHUNK))
        at += APPLY_CHUNK
    if events - at > APPLY_EDGE:
        bounds.append((at, events - APPLY_EDGE))
        at = events - APPLY_EDGE
    if events > at:
        bounds.append((at, events))
    return bounds


class IndexState(msgspec.Struct, frozen=True):
    """What the index holds, as the sync job needs to know it."""

    ready: bool
    """A complete generation is live (False: flushed or new Redis, or the first load unfinished)."""
    generation: int | None
    """Id of the live generation."""
    seq: int
    """The cursor: the last upstream sequence number applied (0 when not ready)."""
    feed_id: str | None
    """The upstream feed (id or epoch) the cursor belongs to; another id means a reset feed."""
    as_of: float | None
    """Redis server time when the index was last confirmed consistent with the upstream."""
    heartbeat_seq: int | None
    """The cursor the last heartbeat confirmed."""
    upstream_time: float | None
    """The upstream's time stated at the last heartbeat (or commit)."""
    count: int
    """Permits in the live generation."""
    buckets: int | None
    """Buckets of each secondary look-up in the live generation."""
    leader: str | None = None
    """``"<fence>:<owner>"`` of the sync job holding the lock, if any."""


class ApplyResult(msgspec.Struct, frozen=True):
    """What :meth:`IndexWriter.apply_page` did."""

    applied: int
    """Events whose record replaced the stored one."""
    unchanged: int
    """Events above the cursor that the version guard turned into no-ops (v not higher)."""
    duplicates: int
    """Events at or below the cursor (already applied): no-ops."""
    cursor: int
    """The cursor after the page."""
    generation: int
    changed: list[str]
    """Permit numbers whose record changed (as published)."""


def _script_error(exc: redis.ResponseError) -> PermitIndexError | None:
    text = str(exc)
    code, _, detail = text.partition(" ")
    if code == "CURSOR_MOVED" or code == "CURSOR_BEHIND":
        stored = int(detail) if detail.strip().isdigit() else None
        return CursorMismatch(f"index cursor is {detail}", stored=stored)
    kind = _SCRIPT_ERRORS.get(code)
    if kind is None:
        return None
    return kind(text)


def _float(value: bytes | None) -> float | None:
    if value is None or value == b"":
        return None
    return float(value)


def _int(value: bytes | None) -> int | None:
    if value is None or value == b"":
        return None
    return int(value)


class IndexWriter:
    """Writes the permit index. Only the leader (see :meth:`acquire_leadership`) writes;
    every write carries its fencing token and is refused (:class:`StaleFence`) once the
    token is no longer the lock holder's.

    ``redis`` is a sync client (``verifier.lib.redis_client.sync_client``), standalone
    or cluster.
    """

    def __init__(self, redis_client: SyncRedisClient, namespace: str = DEFAULT_NAMESPACE, *,
                 change_stream_maxlen: int = DEFAULT_STREAM_MAXLEN) -> None:
        self.redis = redis_client
        self.keys = KeyLayout(namespace)
        self.change_stream_maxlen = max(1, change_stream_maxlen)
        """About how many entries the change stream keeps (verifier.index.change_stream)."""
        self._acquire = redis_client.register_script(scripts.ACQUIRE)
        self._renew = redis_client.register_script(scripts.RENEW)
        self._release = redis_client.register_script(scripts.RELEASE)
        self._begin = redis_client.register_script(scripts.BEGIN)
        self._adopt = redis_client.register_script(scripts.ADOPT)
        self._load = redis_client.register_script(scripts.LOAD)
        self._commit = redis_client.register_script(scripts.COMMIT)
        self._apply = redis_client.register_script(scripts.APPLY)
        self._apply_loaded = False
        """APPLY is in the server's script cache (loaded by this writer for chunked pages)."""
        self._heartbeat = redis_client.register_script(scripts.HEARTBEAT)

    # -- plumbing --------------------------------------------------------------

    def _call(self, script: Any, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        try:
            return script(keys=list(keys), args=list(args))
        except redis.ResponseError as exc:
            mapped = _script_error(exc)
            if mapped is not None:
                raise mapped from None
            raise redis_unavailable(exc, IndexUnavailable) from exc
        except REDIS_UNAVAILABLE as exc:
            raise redis_unavailable(exc, IndexUnavailable) from exc

    def _io(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except REDIS_UNAVAILABLE as exc:
            raise redis_unavailable(exc, IndexUnavailable) from exc

    def _pipeline(self) -> Any:
        return self.redis.pipeline(transaction=False)

    # -- leadership ------------------------------------------------------------

    def acquire_leadership(self, owner: str, ttl_s: float, *, take_over: str | None = None) -> int | None:
        """Take the sync job's leader lock for ``ttl_s`` seconds.

        Returns the fencing token (a number that grows with every new leader, also
        across a FLUSHALL), or None when another owner holds the lock. Re-entrant: the
        current holder gets its own token back (and the TTL renewed).

        ``take_over``: the lock's value (``"<fence>:<owner>"``) as read, when the caller
        knows that holder is dead (a restarted job reclaiming its predecessor's lock):
        the lock is taken if it still holds exactly that value. The new token is higher,
        so the dead holder's writes would be refused even if it were not dead.
        """
        fence = self._call(self._acquire, [self.keys.leader, self.keys.fence],
                           [owner, max(1, int(ttl_s * 1000)), take_over or ""])
        return None if fence is None else int(fence)

    def leader(self) -> str | None:
        """The lock's value (``"<fence>:<owner>"``), or None when nobody holds it."""
        value = self._io(self.redis.get, self.keys.leader)
        return value.decode() if value is not None else None

    def renew_leadership(self, owner: str, fence: int, ttl_s: float) -> bool:
        """Extend the lock; False when it was lost (expired, or taken): stop writing."""
        return bool(self._call(self._renew, [self.keys.leader],
                               [f"{fence}:{owner}", max(1, int(ttl_s * 1000))]))

    def release_leadership(self, owner: str, fence: int) -> bool:
        """Give the lock up (on a clean shutdown) so a standby takes over at once."""
        return bool(self._call(self._release, [self.keys.leader], [f"{fence}:{owner}"]))

    # -- state -----------------------------------------------------------------

    def pointer(self) -> Pointer | None:
        return Pointer.parse(self._io(self.redis.get, self.keys.current))

    def state(self) -> IndexState:
        """The live generation's cursor, feed and freshness (``ready=False`` when none)."""
        raw, leader = self._io(self.redis.mget, [self.keys.current, self.keys.leader])
        pointer = Pointer.parse(raw)
        leader_text = leader.decode() if leader else None
        if pointer is None:
            return IndexState(ready=False, generation=None, seq=0, feed_id=None, as_of=None,
                              heartbeat_seq=None, upstream_time=None, count=0, buckets=None,
                              leader=leader_text)
        fields = ("state", "seq", "feed", "as_of", "hb_seq", "upstream_time", "count")
        values = self._io(self.redis.hmget, self.keys.meta(pointer.generation), fields)
        meta = dict(zip(fields, values))
        if meta["state"] != b"live":
            # The pointer names a generation that is gone: treat as not ready.
            return IndexState(ready=False, generation=pointer.generation, seq=0, feed_id=None,
                              as_of=None, heartbeat_seq=None, upstream_time=None, count=0,
                              buckets=pointer.buckets, leader=leader_text)
        return IndexState(
            ready=True,
            generation=pointer.generation,
            seq=_int(meta["seq"]) or 0,
            feed_id=meta["feed"].decode() if meta["feed"] else None,
            as_of=_float(meta["as_of"]),
            heartbeat_seq=_int(meta["hb_seq"]),
            upstream_time=_float(meta["upstream_time"]),
            count=_int(meta["count"]) or 0,
            buckets=pointer.buckets,
            leader=leader_text,
        )

    # -- incremental -----------------------------------------------------------

    def apply_page(self, events: Sequence[ChangeEvent], *, cursor_before: int, fence: int) -> ApplyResult:
        """Apply one page of the change feed, atomically together with the cursor.

        - Events at or below the stored cursor are no-ops (a replayed page is harmless).
        - A record replaces the stored one only when its ``v`` is higher (version
          guard, checked again inside the Lua script).
        - The cursor moves to the page's highest ``seq`` in the same script; the changed
          permit numbers are published on the changes channel by that script too, and
          each applied event is appended to the change stream
          (:mod:`verifier.index.change_stream`).
        - ``cursor_before`` ahead of the stored cursor means changes would be skipped:
          :class:`CursorMismatch` (re-read :meth:`state`, resume from its ``seq``).
        - A stale ``fence``: :class:`StaleFence`. No live generation: :class:`IndexNotReady`.

        A kill -9 at any instant leaves either the whole page applied with its cursor,
        or nothing of it; a page of ``2 * APPLY_CHUNK`` events or more goes in chunks
        (:meth:`_apply_chunks`), each atomic with its own cursor: a kill leaves a prefix
        of the page applied with the cursor after it, and the page read again from that
        cursor applies the rest.
        """
        carried = _Carried()
        for _attempt in range(5):
            pointer = self.pointer()
            if pointer is None:
                raise IndexNotReady("no live generation: a full resync is needed")
            try:
                return carried.add_to(self._apply_once(pointer, events, cursor_before=cursor_before, fence=fence,
                                                       carried=carried))
            except (GenerationChanged, _Retry):
                carried.retried()
                continue
        raise IndexUnavailable("the index kept changing under apply_page; giving up this round")

    def _apply_once(self, pointer: Pointer, events: Sequence[ChangeEvent], *,
                    cursor_before: int, fence: int, carried: "_Carried") -> ApplyResult:
        """Read what the page touches, plan it (:func:`plan_page`), run the plan."""
        generation = pointer.generation
        meta_key = self.keys.meta(generation)
        record_prefix = self.keys.record_prefix(generation)
        pns = page_permits(events)
        pipe = self._pipeline()
        pipe.hmget(meta_key, "seq", "feed")
        # execute_command: redis-py's cluster pipeline refuses .mget()/.mset() by name,
        # although keys of one slot are fine.
        pipe.execute_command("MGET", self.keys.current, self.keys.leader,
                             *(record_prefix + pn.encode() for pn in pns))
        (stored_raw, feed), (live, lock, *records) = self._io(pipe.execute)
        if live != pointer.raw:
            raise _Retry()
        # Checked here too (the script checks again, atomically) so that a stale writer
        # is told even when its page turns out to be all no-ops.
        if lock is None or lock.split(b":", 1)[0] != b"%d" % fence:
            raise StaleFence(f"fence {fence} is not the leader's ({lock!r})")
        if stored_raw is None:
            raise IndexNotReady(f"generation {generation} has no metadata: a full resync is needed")
        stored = int(stored_raw)
        if cursor_before > stored:
            raise CursorMismatch(
                f"cursor_before {cursor_before} is ahead of the index's cursor {stored}: "
                "changes in between would be lost", stored=stored)
        try:
            held = {pn: (decode_stored(pn, raw) if raw is not None else None) for pn, raw in zip(pns, records)}
        except StoredRecordError as exc:  # a corrupt record is an outage, not "no such permit"
            raise IndexUnavailable(f"undecodable permit record in the index: {exc}") from exc
        if len(events) >= 2 * APPLY_CHUNK and self._chunks_overlap():
            return self._apply_chunks(pointer, events, stored, stored_raw, feed or b"", held, fence, carried)
        plan = plan_page(events, stored, held)
        if not plan.writes_nothing:
            keys, args = apply_call(plan, self.keys, pointer, fence, stored_raw, feed=feed or b"",
                                    stream_maxlen=self.change_stream_maxlen)
            try:
                self._call(self._apply, keys, args.argv())
            except CursorMismatch as exc:
                # Another apply got in between our read and our script: read again.
                log.info("index cursor moved under apply_page (now %s); retrying", exc.stored)
                raise _Retry() from None
        return ApplyResult(applied=plan.applied, unchanged=plan.unchanged, duplicates=plan.duplicates,
                           cursor=plan.cursor, generation=generation, changed=plan.changed)

    def _chunks_overlap(self) -> bool:
        """Whether this client lets a script be sent before its reply is read (a standalone
        client: one connection of its pool; a Cluster client goes page by page)."""
        return isinstance(self.redis, redis.Redis)

    def _apply_chunks(self, pointer: Pointer, events: Sequence[ChangeEvent], stored: int, stored_raw: bytes,
                      feed: bytes, held: dict[str, PermitRecord | None], fence: int,
                      carried: "_Carried") -> ApplyResult:
        """A large page in chunks (:func:`chunk_bounds`) of events in ``seq`` order, each one
        APPLY script with the cursor after it, the next chunk planned while Redis runs the
        one before (on the records as that one leaves them): the client's planning and
        encoding (~9 us an event) and Redis' script (~8 us) overlap instead of adding up.

        Each chunk is atomic with its cursor, so a kill -9 leaves a prefix of the page
        applied with the cursor after it (the rest is applied when the page comes again:
        events at or below the cursor are no-ops). A chunk is sent only once the one
        before it succeeded; on a refusal the chunks done so far are ``carried`` into the
        retry's counts (:meth:`apply_page`)."""
        ordered = sorted(events, key=lambda e: e.seq)
        state = dict(held)
        cursor, cursor_raw = stored, stored_raw
        changed: dict[str, None] = {}
        applied = unchanged = duplicates = 0
        pool = self.redis.connection_pool
        if not self._apply_loaded:
            self._io(self.redis.script_load, scripts.APPLY)
            self._apply_loaded = True
        connection = self._io(pool.get_connection)
        pending: Any = None  # the plan whose script was sent and whose reply is not read yet
        try:
            for start, end in chunk_bounds(len(ordered)):
                chunk = ordered[start:end]
                # planned, encoded and packed while Redis runs the chunk before
                plan = plan_page(chunk, cursor, {pn: state[pn] for pn in page_permits(chunk)})
                packed = None
                if not plan.writes_nothing:
                    keys, args = apply_call(plan, self.keys, pointer, fence, cursor_raw, feed=feed,
                                            stream_maxlen=self.change_stream_maxlen)
                    packed = connection.pack_command("EVALSHA", self._apply.sha, len(keys), *keys, *args.argv())
                if pending is not None:
                    self._chunk_reply(connection, carried)
                    pending = None
                if packed is not None:
                    self._io(connection.send_packed_command, packed)
                    pending = plan
                state.update(plan.written)
                cursor, cursor_raw = plan.cursor, b"%d" % plan.cursor
                applied += plan.applied
                unchanged += plan.unchanged
                duplicates += plan.duplicates
                changed.update(dict.fromkeys(plan.changed))
                carried.pending = (plan.applied, plan.unchanged, plan.changed)
            if pending is not None:
                self._chunk_reply(connection, carried)
        except BaseException:
            connection.disconnect()  # a reply may be left unread on it
            raise
        finally:
            pool.release(connection)
        return ApplyResult(applied=applied, unchanged=unchanged, duplicates=duplicates, cursor=cursor,
                           generation=pointer.generation, changed=list(changed))

    def _chunk_reply(self, connection: Any, carried: "_Carried") -> None:
        """The reply of the chunk sent last; a refusal is raised as :meth:`_call` raises it
        (CursorMismatch: read again), after the chunks before it are ``carried``."""
        try:
            connection.read_response()
        except redis.exceptions.NoScriptError:
            self._apply_loaded = False  # the server lost its scripts (restarted): load and plan again
            raise _Retry() from None
        except redis.ResponseError as exc:
            mapped = _script_error(exc)
            if isinstance(mapped, CursorMismatch):
                log.info("index cursor moved under apply_page (now %s); retrying", mapped.stored)
                raise _Retry() from None
            if mapped is not None:
                raise mapped from None
            raise redis_unavailable(exc, IndexUnavailable) from exc
        except REDIS_UNAVAILABLE as exc:
            raise redis_unavailable(exc, IndexUnavailable) from exc
        carried.confirm()

    def heartbeat(self, seq: int, upstream_time: float | None, fence: int) -> float:
        """Mark the index consistent with the upstream as of now (the sync job has read
        the feed up to its head and applied it up to ``seq``). Returns the server time
        recorded. :class:`CursorMismatch` when the stored cursor is below ``seq``."""
        pointer = self.pointer()
        if pointer is None:
            raise IndexNotReady("no live generation: a full resync is needed")
        now = self._call(
            self._heartbeat,
            [self.keys.current, self.keys.leader, self.keys.meta(pointer.generation)],
            [pointer.raw, fence, seq, "" if upstream_time is None else repr(float(upstream_time))],
        )
        return float(now)

    # -- full resync -----------------------------------------------------------

    def begin_snapshot(self, fence: int, *, expected_count: int | None = None) -> "SnapshotLoad":
        """Start loading a new generation beside the live one (drops orphaned loads first).

        ``expected_count`` (the snapshot's size, when known) sizes the secondary
        look-up buckets so they stay compact.
        """
        self.drop_orphans()
        generation = int(self._io(self.redis.incr, self.keys.genseq))
        buckets = buckets_for(expected_count)
        self._call(self._begin, [self.keys.gens, self.keys.leader, self.keys.meta(generation)],
                   [generation, fence, buckets])
        return SnapshotLoad(self, Pointer(generation, buckets, compact=True), fence)

    def interrupted_load(self) -> tuple[int, int, int] | None:
        """The newest load a dead leader left unfinished: ``(generation, buckets,
        resync cursor)`` (the cursor counts the snapshot records it wrote), or None."""
        pointer = self.pointer()
        for generation in reversed(self.generations()):
            if pointer is not None and generation == pointer.generation:
                continue
            state, buckets, loaded = self._io(self.redis.hmget, self.keys.meta(generation),
                                              ("state", "buckets", "loaded"))
            if state == b"loading" and buckets and loaded is not None:
                return generation, int(buckets), int(loaded)
        return None

    def resume_snapshot(self, fence: int, generation: int, buckets: int) -> "SnapshotLoad":
        """Take over the unfinished load of ``generation`` (see :meth:`interrupted_load`):
        the other orphans are dropped, the load's fence becomes ours (the old leader's
        chunks are refused from now on), and the returned load checks the records below
        the resync cursor against the new snapshot stream instead of writing them again
        (:meth:`SnapshotLoad.add`)."""
        pointer = self.pointer()
        for other in self.generations():
            if other != generation and (pointer is None or other != pointer.generation):
                self.drop_generation(other)
        loaded = self._call(self._adopt, [self.keys.leader, self.keys.meta(generation)], ["", fence])
        # The look-ups are written from the stream at commit; a kill during that write
        # may have left some, of the older stream: start them afresh.
        for prefix in (self.keys.ssn_prefix(generation), self.keys.cn_prefix(generation)):
            try:
                stale = list(self.redis.scan_iter(match=prefix + b"*", count=1000))
                for at in range(0, len(stale), 1000):
                    self.redis.unlink(*stale[at:at + 1000])
            except REDIS_UNAVAILABLE as exc:
                raise redis_unavailable(exc, IndexUnavailable) from exc
        load = SnapshotLoad(self, Pointer(generation, buckets, compact=True), fence)
        load.verify_until = int(loaded or 0)
        return load

    def generations(self) -> list[int]:
        """Every generation that exists (live, loading or orphaned)."""
        return sorted(int(g) for g in self._io(self.redis.smembers, self.keys.gens))

    def drop_orphans(self) -> list[int]:
        """Drop every generation that is not live (abandoned loads). Returns their ids."""
        pointer = self.pointer()
        dropped = []
        for generation in self.generations():
            if pointer is None or generation != pointer.generation:
                self.drop_generation(generation)
                dropped.append(generation)
        return dropped

    def drop_generation(self, generation: int, *, batch: int = 1000) -> int:
        """Delete a generation that is not live, in batches (UNLINK frees memory in the
        background). Its metadata goes first, so a reader still holding it sees it
        gone and re-reads the pointer. Returns the keys deleted."""
        pointer = self.pointer()
        if pointer is not None and pointer.generation == generation:
            raise PermitIndexError(f"generation {generation} is live; refusing to drop it")
        self._io(self.redis.unlink, self.keys.meta(generation))
        deleted = 1
        match = self.keys.prefix(generation) + b"*"
        # On a cluster scan_iter walks every primary; only the tag's node has matches.
        scan_kwargs: dict[str, Any] = {"match": match, "count": batch}
        pending: list[bytes] = []
        try:
            for key in self.redis.scan_iter(**scan_kwargs):
                pending.append(key)
                if len(pending) >= batch:
                    self.redis.unlink(*pending)
                    deleted += len(pending)
                    pending = []
            if pending:
                self.redis.unlink(*pending)
                deleted += len(pending)
        except REDIS_UNAVAILABLE as exc:
            raise redis_unavailable(exc, IndexUnavailable) from exc
        self._io(self.redis.srem, self.keys.gens, generation)
        return deleted


class _Carried:
    """What the chunks of a page confirmed in attempts that then had to be retried
    (:meth:`IndexWriter._apply_chunks`): on the retry those events are at or below the
    cursor, and would count as duplicates."""

    def __init__(self) -> None:
        self.applied = self.unchanged = 0
        self.changed: dict[str, None] = {}
        self.pending: tuple[int, int, list[str]] | None = None
        """The counts of the chunk sent last, until its reply confirms it."""
        self._attempt: list[tuple[int, int, list[str]]] = []
        """The chunks the current attempt confirmed."""

    def confirm(self) -> None:
        if self.pending is not None:
            self._attempt.append(self.pending)
            self.pending = None

    def retried(self) -> None:
        """The current attempt stopped short: what it confirmed carries over to the next."""
        for applied, unchanged, changed in self._attempt:
            self.applied += applied
            self.unchanged += unchanged
            self.changed.update(dict.fromkeys(changed))
        self._attempt.clear()
        self.pending = None

    def add_to(self, result: ApplyResult) -> ApplyResult:
        """``result`` of the attempt that finished (its own chunks counted in it), with what
        earlier attempts confirmed."""
        self._attempt.clear()
        if not self.applied and not self.unchanged:
            return result
        moved = self.applied + self.unchanged  # counted as duplicates by the later attempt
        return ApplyResult(applied=result.applied + self.applied, unchanged=result.unchanged + self.unchanged,
                           duplicates=max(0, result.duplicates - moved), cursor=result.cursor,
                           generation=result.generation, changed=list({**self.changed, **dict.fromkeys(result.changed)}))


class _Retry(Exception):
    """Internal: the state read before a script changed; read again."""


def _joined_mapping(entries: bytearray, hashed: bool) -> dict[bytes, bytes]:
    """A look-up bucket's gathered ``id NUL pn NUL`` entries as its hash: field (the id,
    or its crc32 when ``hashed``) -> the permit numbers holding it, space-separated."""
    parts = bytes(entries).split(b"\0")
    idents, pns = parts[0:-1:2], parts[1::2]
    if hashed:  # keys.lookup_field, inlined
        idents = [b"%d" % zlib.crc32(ident) for ident in idents]
    mapping: dict[bytes, bytes] = dict(zip(idents, pns))
    if len(mapping) != len(idents):  # rare: one id on several permits
        mapping = {}
        for ident, pn in zip(idents, pns):
            held = mapping.get(ident)
            if held is None:
                mapping[ident] = pn
            elif pn not in held.split(b" "):
                mapping[ident] = held + b" " + pn
    return mapping


class PreparedBatch(NamedTuple):
    """A snapshot batch encoded for :meth:`SnapshotLoad.write` (from :meth:`SnapshotLoad.prepare`)."""

    keys: list[bytes]
    values: list[bytes]


class SnapshotLoad:
    """A new generation being loaded beside the live one (from :meth:`IndexWriter.begin_snapshot`).

    ``add(records)`` as often as needed (fenced LOAD scripts of 500 records; the secondary
    look-ups are gathered in memory, about 40 bytes an id, and written bucket by bucket at
    commit), then ``commit(seq, feed_id)`` switches it in atomically, or ``abort()``.
    ``add`` is ``write(prepare(records))``: the sync job prepares the next frame in a
    read-ahead thread while this one is written (``verifier.lib.read_ahead``).
    Readers see the old generation, complete, until the switch.
    """

    def __init__(self, writer: IndexWriter, pointer: Pointer, fence: int) -> None:
        self.writer = writer
        self.pointer = pointer
        self.fence = fence
        self.count = 0
        """Records of the snapshot stream taken so far (written, or found already there)."""
        self.verify_until = 0
        """Stream positions below this were written by a leader before us (a resumed load):
        compare them with what is stored and write only those that differ."""
        self.written = 0
        """Records actually written by this load (less than ``count`` when resumed)."""
        self.started = time.monotonic()
        self._record_prefix = writer.keys.record_prefix(pointer.generation)
        self._meta = writer.keys.meta(pointer.generation)
        mask = pointer.buckets - 1
        self._mask = mask
        # bucket -> bytearray of "id\0pn\0" entries, one per secondary look-up kind.
        self._ssn: dict[int, bytearray] = {}
        self._cn: dict[int, bytearray] = {}
        self._done = False
        writer._io(writer.redis.script_load, scripts.LOAD)  # pipelined as EVALSHA below

    @property
    def generation(self) -> int:
        return self.pointer.generation

    def add(self, records: Iterable[PermitRecord]) -> int:
        """Write a batch of records (any size; pipelined). Returns how many were taken.

        Each chunk of records goes with the resync cursor (the stream position after
        it) in one fenced script (``scripts.LOAD``): a leader that takes the load over
        knows how far it got, and a paused old leader cannot write into it any more.
        On a resumed load, the records below the cursor are read back (MGET) and only
        those the new stream holds otherwise (changed since, or missing) are written.

        ``add(batch)`` is ``write(prepare(batch))``: a caller may prepare the next
        batch in another thread while this one is written (:meth:`prepare`).
        """
        return self.write(self.prepare(records))

    def prepare(self, records: Iterable[PermitRecord]) -> PreparedBatch:
        """The CPU half of :meth:`add`: check the identifiers, encode the records and
        gather their secondary look-ups. Nothing is sent to Redis.

        Batches must be prepared in stream order and each one written
        (:meth:`write`) before the next is; preparing batch k+1 while batch k is
        written is what this split is for. A batch prepared and never written (the
        load failed) leaves its look-ups gathered, which is harmless: a failed load is
        aborted or resumed by a new :class:`SnapshotLoad`, which gathers its own.
        ValueError (an unusable identifier) is raised here, before anything of the
        batch is written.
        """
        if self._done:
            raise SnapshotAborted("this snapshot load is finished")
        batch = records if isinstance(records, list) else list(records)
        keys, values = prepare_load(batch, self._record_prefix, self._mask, self._ssn, self._cn,
                                    None if self.pointer.compact else encode_record)
        return PreparedBatch(keys, values)

    def write(self, prepared: PreparedBatch) -> int:
        """The Redis half of :meth:`add`: write a batch :meth:`prepare` made. Returns
        how many records of the stream it covers. Raises for this batch (SnapshotAborted,
        StaleFence, IndexUnavailable) before returning."""
        if self._done:
            raise SnapshotAborted("this snapshot load is finished")
        keys, values = prepared.keys, prepared.values
        position = self.count
        total = len(keys)
        # Stream positions after each record written; None: all of them, in order.
        ends: list[int] | None = None
        verify = max(0, min(total, self.verify_until - position))
        if verify:
            stored: list[bytes | None] = []
            for at in range(0, verify, _MSET_CHUNK):
                stored += self.writer._io(self.redis_mget, keys[at:min(verify, at + _MSET_CHUNK)])
            keep = [i for i in range(verify) if stored[i] != values[i]] + list(range(verify, total))
            ends = [position + i + 1 for i in keep]
            keys = [keys[i] for i in keep]
            values = [values[i] for i in keep]
        if keys or not self.count:
            self._write(keys, values, ends, position)
        self.count += total
        self.written += len(keys)
        return total

    def redis_mget(self, keys: list[bytes]) -> list[bytes | None]:
        # execute_command: redis-py's cluster client splits mget() by slot; one tag, one slot.
        return self.writer.redis.execute_command("MGET", *keys)  # type: ignore[no-any-return]

    def _write(self, keys: list[bytes], values: list[bytes], ends: list[int] | None, position: int,
               retried: bool = False) -> None:
        """LOAD the records in chunks, each with the stream position after its last record."""
        w = self.writer
        pipe = w._pipeline()
        sha = w._load.sha
        leader, meta, fence = w.keys.leader, self._meta, self.fence
        for at in range(0, max(1, len(keys)), _MSET_CHUNK):
            chunk_keys = keys[at:at + _MSET_CHUNK]
            n = len(chunk_keys)
            if n == 0:
                cursor = position
            else:
                cursor = ends[at + n - 1] if ends is not None else position + at + n
            pipe.evalsha(sha, 2 + n, leader, meta, *chunk_keys, cursor, fence, *values[at:at + _MSET_CHUNK])
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            if retried:
                raise IndexUnavailable("the LOAD script vanished twice (Redis restarting?)") from None
            w._io(w.redis.script_load, scripts.LOAD)  # a restarted Redis: load it, go again
            return self._write(keys, values, ends, position, retried=True)
        except redis.ResponseError as exc:
            # A pipeline's error reads "Command # 1 (...) of pipeline caused error: CODE ...".
            text = str(exc).rpartition("caused error: ")[2]
            mapped = _script_error(redis.ResponseError(text))
            if isinstance(mapped, (SnapshotAborted, StaleFence)):
                self._done = True
            if mapped is not None:
                raise mapped from None
            raise redis_unavailable(exc, IndexUnavailable) from exc
        except REDIS_UNAVAILABLE as exc:
            raise redis_unavailable(exc, IndexUnavailable) from exc

    def _write_lookups(self) -> None:
        """Write the gathered secondary look-ups, one HSET a bucket.

        With a standalone client the commands are packed in C (``pack_lookup_bucket``)
        and sent in chunks on one connection, each chunk's replies read after the next
        chunk is sent: Redis works through a chunk while the next one is packed. A
        Cluster client pipelines ``hset`` calls (the keys share one slot: one node)."""
        w = self.writer
        hashed = self.pointer.hashed
        for prefix, buffers in ((w.keys.ssn_prefix(self.generation), self._ssn),
                                (w.keys.cn_prefix(self.generation), self._cn)):
            if w._chunks_overlap():
                self._stream_lookups(prefix, buffers, hashed)
            else:
                pipe = w._pipeline()
                queued = 0
                for bucket, buf in buffers.items():
                    pipe.hset(prefix + b"%d" % bucket, mapping=_joined_mapping(buf, hashed))
                    queued += 1
                    if queued >= _PIPELINE_COMMANDS:
                        w._io(pipe.execute)
                        pipe = w._pipeline()
                        queued = 0
                if queued:
                    w._io(pipe.execute)
            buffers.clear()

    def _stream_lookups(self, prefix: bytes, buffers: dict[int, bytearray], hashed: bool) -> None:
        w = self.writer
        pool = w.redis.connection_pool
        connection = w._io(pool.get_connection)
        unread = 0  # replies of the chunk sent before the last one
        chunk: list[bytes] = []

        def send() -> None:
            nonlocal unread
            w._io(connection.send_packed_command, [b"".join(chunk)])
            for _ in range(unread):
                connection.read_response()
            unread = len(chunk)
            chunk.clear()

        try:
            for bucket, buf in buffers.items():
                key = prefix + b"%d" % bucket
                packed = pack_lookup_bucket(key, buf, hashed)
                if packed is None:  # an id on several permits (or a crc32 collision): join them
                    fields = [part for item in _joined_mapping(buf, hashed).items() for part in item]
                    packed = b"".join(connection.pack_command("HSET", key, *fields))
                chunk.append(packed)
                if len(chunk) >= _PIPELINE_COMMANDS:
                    send()
            if chunk:
                send()
            for _ in range(unread):
                connection.read_response()
        except BaseException as exc:
            connection.disconnect()  # replies may be left unread on it
            if isinstance(exc, REDIS_UNAVAILABLE):
                raise redis_unavailable(exc, IndexUnavailable) from exc
            if isinstance(exc, redis.ResponseError):
                raise IndexUnavailable(f"writing a look-up bucket was refused: {exc}") from exc
            raise
        finally:
            pool.release(connection)

    def commit(self, seq: int, feed_id: str, *, upstream_time: float | None = None,
               drop_old: bool = True) -> Pointer | None:
        """Switch this generation in, atomically, with cursor ``seq`` of feed ``feed_id``.

        The previous generation is then deleted in batches (``drop_old``: SCAN + UNLINK,
        ~7 s for a million permits on the 2-core machine; pass ``drop_old=False`` and call
        :meth:`IndexWriter.drop_orphans` when idle to follow the feed at once instead).
        Returns the previous pointer.
        :class:`StaleFence` if leadership was lost; :class:`SnapshotAborted` if the
        generation was dropped meanwhile.
        """
        if self._done:
            raise SnapshotAborted("this snapshot load is finished")
        self._write_lookups()
        w = self.writer
        message = encode_change(ChangeMessage("switch", self.generation, seq, []))
        previous_raw = w._call(
            w._commit,
            [w.keys.current, w.keys.leader, self._meta, w.keys.changelog],
            [self.pointer.raw, self.fence, seq, feed_id, self.count, w.keys.channel, message,
             "" if upstream_time is None else repr(float(upstream_time)), self.generation,
             w.change_stream_maxlen],
        )
        self._done = True
        previous = Pointer.parse(previous_raw)
        if drop_old and previous is not None and previous.generation != self.generation:
            try:
                w.drop_generation(previous.generation)
            except PermitIndexError as exc:  # the switch is done; cleanup can wait
                log.warning("could not drop generation %s yet: %s", previous.generation, exc)
        return previous

    def abort(self) -> None:
        """Abandon the load and delete what was written."""
        self._done = True
        self._ssn.clear()
        self._cn.clear()
        self.writer.drop_generation(self.generation)
