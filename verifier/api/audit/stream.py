"""The audit in the store of record: one stream, appended to by an idempotent script.

Keys, all in one slot (the key ``pv:audit`` hashes like the tag ``{pv:audit}``: on a
Cluster everything here lives on one node, the audit's):

- ``pv:audit``: the stream; each entry a batch of records, field ``r``, a JSON array of
  records as stored (with ``id`` and ``h``, see chain.py);
- ``{pv:audit}:head:<shard>``: hash ``seq``, ``h``: the last record of the shard the
  stream took;
- ``{pv:audit}:shards``: the set of shard names;
- ``{pv:audit}:keys``: hash kid -> JWK, the public checkpoint keys;
- ``{pv:audit}:trimmed``: hash shard -> ``<seq>:<h>``, the last record of each shard
  that retention trimmed from the stream (where the live chain now begins).

:data:`APPEND` adds a batch of one shard only if it begins after the shard's head,
and moves the head, atomically: a batch sent twice (a flush that failed half-way and
was sent again, a spool replayed twice, a restore run over records the stream has)
is taken once. So within a shard the stream holds each record once, in order. The
same call writes the per-permit index of "who verified me" for the batch it took
(verifier/api/audit/history.py: the index is written with the audit, or not at all).
:func:`deliver` is the one client of the script: the API workers' flush, their sweep
of slots no worker holds, and ``verifier audit restore``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from verifier.api.audit.chain import Link
from verifier.api.audit.history import INDEX, INDEX_BODY, INDEX_CHUNK, HistoryPolicy
from verifier.lib.redis_client import AsyncRedisClient

__all__ = [
    "APPEND",
    "APPENDED",
    "AUDIT_STREAM",
    "BATCH",
    "BATCH_BYTES",
    "GAP",
    "KEYS_KEY",
    "NOT_NEXT",
    "NO_HISTORY",
    "OVERLAP",
    "PIPELINE_BYTES",
    "SHARDS_KEY",
    "TRIMMED_KEY",
    "Delivered",
    "Numbered",
    "deliver",
    "hash_of",
    "head_key",
    "pipelines",
    "publish_key",
    "read_anchors",
    "read_heads",
    "read_keys",
]

AUDIT_STREAM = "pv:audit"
SHARDS_KEY = "{pv:audit}:shards"
KEYS_KEY = "{pv:audit}:keys"
TRIMMED_KEY = "{pv:audit}:trimmed"
_HEAD_PREFIX = "{pv:audit}:head:"
BATCH = 1000
"""Records per stream entry at most."""
BATCH_BYTES = 128 * 1024
"""About the most bytes of records per stream entry."""
PIPELINE_BYTES = 512 * 1024
"""About the most bytes of records per pipeline (requests are served between pipelines)."""

Numbered = tuple[int, bytes]
"""A record's number in its shard and its stored line."""

APPENDED, OVERLAP, NO_HISTORY, GAP, NOT_NEXT = 1, 0, -1, 2, 3
"""APPEND's first reply: taken; not taken, the head is at or past the batch's first record (drop those
and send the rest); not taken, the store has no history of a shard whose batch does not begin at
record 1 (the store lost it: ``verifier audit restore``); taken, but records between the head and the
batch never reached the store; not taken, the batch had to follow the head and does not (an earlier
batch of the same pipeline was not taken)."""

APPEND = """
local first = tonumber(ARGV[1])
local head = redis.call('HGET', KEYS[2], 'seq')
local status = 1
if head then
  head = tonumber(head)
  if first <= head then
    return {0, head, redis.call('HGET', KEYS[2], 'h')}
  end
  if first > head + 1 then
    if ARGV[7] == '1' then return {3, head, ''} end
    status = 2
  end
else
  head = 0
  if first > 1 and ARGV[6] ~= '1' then return {-1, 0, ''} end
end
redis.call('XADD', KEYS[1], '*', 'r', ARGV[4])
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'h', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[5])
local records = cjson.decode(ARGV[4])
local retention, cap, skip = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
""" + INDEX_BODY + """
return {status, head, ''}
"""
"""KEYS: the stream, the shard's head, the set of shards. ARGV: 1 the batch's first record
number, 2 its last, 3 the last one's h, 4 the batch (JSON array), 5 the shard, 6 '1' to
take a batch of a shard the store has no history of (restore), 7 '1' if the batch must
follow the head (any batch of a pipeline but its first), 8 9 the "who verified me"
retention (ms) and cap, 10 the batch's records (",<i>,...,") whose permits ``INDEX``
calls index instead (bulk look-ups of more than INDEX_CHUNK permits). Replies
``{status, head, head's h when OVERLAP}``."""


def head_key(shard: str) -> str:
    return _HEAD_PREFIX + shard


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_heads(store: AsyncRedisClient) -> dict[str, Link]:
    """The head of every shard the stream took records of."""
    shards = sorted(_text(s) for s in await store.smembers(SHARDS_KEY))
    if not shards:
        return {}
    async with store.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.hmget(head_key(shard), "seq", "h")
        replies = await pipe.execute()
    heads = {}
    for shard, (seq, digest) in zip(shards, replies):
        if seq is not None and digest is not None:
            heads[shard] = Link(shard, int(seq), bytes.fromhex(_text(digest)))
    return heads


async def read_anchors(store: AsyncRedisClient) -> dict[str, Link]:
    """Where each trimmed shard's chain begins in the stream now (its last trimmed record)."""
    anchors = {}
    for shard, value in (await store.hgetall(TRIMMED_KEY)).items():
        seq, _, digest = _text(value).partition(":")
        anchors[_text(shard)] = Link(_text(shard), int(seq), bytes.fromhex(digest))
    return anchors


async def publish_key(store: AsyncRedisClient, jwk: dict[str, str]) -> None:
    await store.hset(KEYS_KEY, jwk["kid"], orjson.dumps(jwk))


async def read_keys(store: AsyncRedisClient) -> dict[str, Any]:
    """The published checkpoint keys as a JWK Set."""
    keys = [orjson.loads(v) for _kid, v in sorted((await store.hgetall(KEYS_KEY)).items())]
    return {"keys": keys}


def hash_of(line: bytes) -> bytes:
    """The ``h`` (hex) of a stored line (``Chain.extend`` writes it last: ``...,"h":"<64 hex>"}``)."""
    if line[-72:-66] != b',"h":"':
        raise ValueError("not a chained audit record")
    return line[-66:-2]


def pipelines(numbered: list[Numbered]) -> list[list[list[Numbered]]]:
    """The records in stream entries (at most BATCH records, about BATCH_BYTES), and the
    entries in pipelines of about PIPELINE_BYTES, in order."""
    out: list[list[list[Numbered]]] = []
    pipeline: list[list[Numbered]] = []
    batch: list[Numbered] = []
    batch_bytes = pipeline_bytes = 0
    for item in numbered:
        size = len(item[1])
        if batch and (len(batch) >= BATCH or batch_bytes + size > BATCH_BYTES):
            pipeline.append(batch)
            batch, batch_bytes = [], 0
            if pipeline_bytes >= PIPELINE_BYTES:
                out.append(pipeline)
                pipeline, pipeline_bytes = [], 0
        batch.append(item)
        batch_bytes += size
        pipeline_bytes += size
    if batch:
        pipeline.append(batch)
    if pipeline:
        out.append(pipeline)
    return out


@dataclass
class Delivered:
    """What :func:`deliver` achieved."""

    taken: int = 0
    held: bool = False
    """The store has no history of the shard and the records do not begin at 1: nothing more sent."""
    forked: Link | None = None
    """The store holds another record under one of these numbers (its head, given here): nothing more sent."""
    gaps: list[tuple[int, int]] = field(default_factory=list)
    """Records (first, last) between the store's head and a batch taken, which never reached the store."""


def _large_records(batch: list[Numbered]) -> tuple[str, list[tuple[int, bytes]]]:
    """The records of ``batch`` that name more than INDEX_CHUNK permits (bulk look-ups), as
    APPEND's skip list, and their permits in chunks of INDEX_CHUNK for INDEX calls
    (``(record number, JSON array of one record)``)."""
    skip: list[str] = []
    chunks: list[tuple[int, bytes]] = []
    for i, (seq, line) in enumerate(batch, 1):
        if line.count(b",") < INDEX_CHUNK:  # cheap: only a line this long can name that many permits
            continue
        record = orjson.loads(line)
        permits = record.get("pn")
        if not isinstance(permits, str) or permits.count(",") < INDEX_CHUNK:
            continue
        skip.append(str(i))
        names = permits.split(",")
        for start in range(0, len(names), INDEX_CHUNK):
            chunks.append((seq, orjson.dumps([{**record, "pn": ",".join(names[start:start + INDEX_CHUNK])}])))
    return ("," + ",".join(skip) + ",") if skip else "", chunks


async def deliver(store: AsyncRedisClient, shard: str, numbered: list[Numbered], *, adopt: bool = False,
                  history: HistoryPolicy = HistoryPolicy()) -> Delivered:
    """Send one shard's records (in order) to the stream with :data:`APPEND`, and index their permits
    for "who verified me" as ``history`` says.

    A batch the store took already is refused by the head check: the records up to the
    head it names are dropped (the same records: the head's hash is theirs, checked
    where we hold the head's record) and the rest sent again. Raises the
    REDIS_UNAVAILABLE errors (what was taken stays taken). ``adopt``: a shard the store
    has no history of may begin after record 1 (a restore; a shard without files).
    """
    result = Delivered()
    ours = dict(numbered)
    pending = numbered
    while pending:
        done_upto = 0
        for pipeline in pipelines(pending):
            appends = []  # the place of each batch's APPEND reply among the pipeline's replies
            calls = 0
            async with store.pipeline(transaction=False) as pipe:
                for i, batch in enumerate(pipeline):
                    last, last_line = batch[-1]
                    skip, chunks = _large_records(batch)
                    # EVAL, not EVALSHA: the same in every kind of pipeline (cluster too), and ~3 KB
                    # of script beside a batch of up to 128 KB. Only a pipeline's first batch may leave
                    # a gap after the head: the others follow it, or an earlier one was refused.
                    appends.append(calls)
                    calls += 1 + len(chunks)
                    pipe.eval(APPEND, 3, AUDIT_STREAM, head_key(shard), SHARDS_KEY, batch[0][0], last,
                              hash_of(last_line), b"[" + b",".join(line for _n, line in batch) + b"]", shard,
                              "1" if adopt else "", "1" if i else "", history.retention_ms, history.cap, skip)
                    for seq, chunk in chunks:
                        pipe.eval(INDEX, 2, AUDIT_STREAM, head_key(shard), chunk, history.retention_ms,
                                  history.cap, "", seq)
                replies = await pipe.execute()
            overlapped = False
            for batch, (status, head, digest) in zip(pipeline, (replies[i] for i in appends)):
                head = int(head)
                if status == NOT_NEXT:
                    overlapped = True
                    done_upto = max(done_upto, head)
                elif status == OVERLAP:
                    overlapped = True
                    mine = ours.get(head)
                    digest = _text(digest)
                    if mine is not None and hash_of(mine).decode() != digest:
                        result.forked = Link(shard, head, bytes.fromhex(digest))
                        return result
                    done_upto = max(done_upto, head)
                elif status == NO_HISTORY:
                    result.held = True
                    return result
                else:
                    if status == GAP:
                        result.gaps.append((head + 1, batch[0][0] - 1))
                    result.taken += len(batch)
                    done_upto = max(done_upto, batch[-1][0])
            if overlapped:
                break
        pending = [item for item in pending if item[0] > done_upto]
    return result
