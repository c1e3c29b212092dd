"""The permit index in Redis: the only meeting point of the API and the sync job.

Writer (the sync job, sync redis-py client)::

    from verifier.lib.redis_client import sync_client
    from verifier.index import IndexWriter

    writer = IndexWriter(sync_client(url))                  # namespace="pv"
    fence = writer.acquire_leadership(owner, ttl_s=10)      # int, or None: stand by
    writer.renew_leadership(owner, fence, ttl_s=10)         # False: lost it, stop writing
    writer.release_leadership(owner, fence)                 # on a clean exit

    state = writer.state()            # IndexState: ready, generation, seq (cursor), feed_id,
                                      # as_of, heartbeat_seq, upstream_time, count, leader
    if not state.ready or state.feed_id != feed_id:        # flushed/new Redis, or reset feed
        load = writer.begin_snapshot(fence, expected_count=n)
        load.add(records)                                   # repeat; pipelined
        load.commit(snapshot_seq, feed_id)                  # atomic switch; old gen dropped
        # or load.abort()
    result = writer.apply_page(events, cursor_before=state.seq, fence=fence)  # ApplyResult
    writer.heartbeat(result.cursor, upstream_time, fence)  # "fresh as of now", when caught up

Reader (the API, asyncio client; ``SyncPermitIndex`` has the same methods, sync)::

    index = PermitIndex(async_client(url))
    record = await index.get(pn)                            # PermitRecord | None
    found = await index.get_many("ssn", ids)                # {id: PermitRecord}, ids "pn"|"ssn"|"cn"
    fresh = await index.freshness()                         # Freshness(ready, generation, seq,
                                                            #   as_of, lag_s, upstream_time, count)

Exceptions (:mod:`verifier.index.errors`): ``IndexUnavailable`` (Redis cannot answer:
STATUS_UNAVAILABLE / back off), ``IndexNotReady`` (no complete index: never answer
"not found"; the sync job resyncs), ``StaleFence`` (leadership lost), ``CursorMismatch``
(``.stored``: resume from there), ``GenerationChanged``, ``SnapshotAborted``.

Changes: every apply and every switch is published on ``CHANGES_CHANNEL``
(``"pv:changes"``), msgpack ``[kind, generation, seq, permit_numbers]``, decoded by
:func:`decode_change` (kind ``"apply"``: drop those permits; ``"switch"``: drop all).

Key layout and why (details in :mod:`verifier.index.keys`)
-----------------------------------------------------------
Everything of one namespace shares ONE hash tag, ``{pv}``: every generation, the
pointer to the live one, the leader lock and the fencing counter. On a Redis Cluster
the index is therefore one slot on one primary, made highly available by that
primary's replicas; the rest of the cluster holds the service's other keys
(challenges, replay guard, rate limits, audit) under their own tags.

Chosen over partitioning the permits across slots because it makes every step
provably atomic with nothing but single-slot Lua scripts: a page of the change feed,
its cursor, the version guard, the fencing check and the pub/sub announcement are
one script (a kill -9 anywhere leaves all or nothing); a snapshot commit flips the
pointer in the same script that checks the fence; readers check the pointer in the
same MGET that reads the records. A partitioned layout would need per-slot steps
with the cursor written last and readers that tolerate half-applied pages. The cost
is size: one node must hold the index, ~316 MB of ``used_memory`` per million permits
(benchmarks/test_bench_index.py, with the Status List entries; 357 MB with ids as bucket
fields and 48 ids a bucket),
and a snapshot load briefly holds two generations. That is far inside one node for the registry this serves; partitioning
by permit-number range under ``{pv:<part>}`` tags with per-part cursors is the way
out if it ever is not.

Storage: a record is a plain string key (the compact stored layout of
:mod:`verifier.index.stored`: a msgpack array without the permit number, which is the
key's last part, dates as day numbers; ~95 bytes, so that jemalloc gives it 112 bytes
instead of msgspec's ~150-byte record's 160) so that a bulk look-up by permit number is
one MGET; ssn -> permit and card number -> permit live in small
hashes of bucketed ids (crc32 of the id picks the bucket, ~64 ids a bucket, and is the
id's field in it: a 4-byte listpack integer; listpack-encoded), which is what keeps
1,000,000 permits with both look-ups well under 400 MB. An id held by
several permits (a new permit for the same person) maps to all of them, and the
reader picks one (:func:`choose_record`). A card that was lost or replaced stays in
the record and keeps resolving to its permit, with its status.

Upgrading: a generation whose pointer ends in ``:h`` has crc32 bucket fields; one
without it (written by an older sync job) keeps its ids as fields, and this code reads
and writes it that way until the next full load. An older reader cannot parse a
``:h`` pointer: upgrade the API workers before the sync job. Likewise a pointer ending in
``:hc`` marks a generation of compact records; a ``:h`` generation keeps msgspec's
record layout for the changes applied to it until the next full load, and readers tell
the two layouts apart value by value (a compact value starts with ``v``, an integer; the
older one with the permit number, a string).

Readiness: ``{pv}:current`` exists only once a full load was committed; it vanishes
with a FLUSHALL or a restart without data, and then readers raise
``IndexNotReady`` and ``IndexWriter.state().ready`` is False (full resync).
"""

from __future__ import annotations

from .changes import CHANGES_CHANNEL, ChangeMessage, changes_channel, decode_change
from .errors import (
    CursorMismatch,
    GenerationChanged,
    IndexNotReady,
    IndexUnavailable,
    PermitIndexError,
    SnapshotAborted,
    StaleFence,
)
from .keys import DEFAULT_NAMESPACE, KeyLayout
from .reader import Freshness, LookupBy, PermitIndex, SyncPermitIndex, choose_record
from .records import Card, ChangeEvent, PermitRecord, decode_record, encode_record
from .writer import ApplyResult, IndexState, IndexWriter, SnapshotLoad

__all__ = [
    "CHANGES_CHANNEL",
    "DEFAULT_NAMESPACE",
    "ApplyResult",
    "Card",
    "ChangeEvent",
    "ChangeMessage",
    "CursorMismatch",
    "Freshness",
    "GenerationChanged",
    "IndexNotReady",
    "IndexState",
    "IndexUnavailable",
    "IndexWriter",
    "KeyLayout",
    "LookupBy",
    "PermitIndex",
    "PermitIndexError",
    "PermitRecord",
    "SnapshotAborted",
    "SnapshotLoad",
    "StaleFence",
    "SyncPermitIndex",
    "changes_channel",
    "choose_record",
    "decode_change",
    "decode_record",
    "encode_record",
]
