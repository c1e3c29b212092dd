"""The audit trail: every verification and look-up, in a Redis stream.

Each answer appends one record to a per-worker buffer (no I/O on the request
path); the worker's maintenance task writes the buffer to the stream ``pv:audit``
every ``FLUSH_INTERVAL_S``, and the app's shutdown writes what is left, so a clean
stop loses nothing. Loss window on a crash (kill -9, power loss): the records of
the last ``FLUSH_INTERVAL_S`` (0.25 s) of that worker, plus, while Redis is
unreachable, what the worker holds for it (at most ``BUFFER_LIMIT`` records; past
that the oldest are dropped, counted and logged).

Delivery is at least once: a flush that failed half-way is written again from the
first pipeline that failed. Each stream entry carries a batch of up to ``BATCH``
records, and up to about ``BATCH_BYTES`` of them, as one JSON array in its field
``r``: one XADD per batch instead of one per record (redis-py spends ~30-40 µs
packing each command; a batch costs ~1 µs a record). The byte bound is for bulk
look-ups, whose records name up to 10,000 permits (~19 KB per 1,000): a
multi-megabyte XADD held Redis, and every look-up waiting on it, for tens of
milliseconds, and its JSON encoding held the worker's event loop as long; so the
batches go out in pipelines of about ``PIPELINE_BYTES``, with requests served
between them.
:func:`verifier.api.audit.export.export_audit` writes one NDJSON line per record.

Each stream entry is appended by a Lua call that also writes the per-permit index of
"who verified me" (verifier/api/audit/history.py) for the records in it: the index is
written with the audit, in the same pipelined batch, or not at all.

A record: ``t`` (epoch ms, as the worker saw it), ``key`` (key id), ``role``,
``terminal``, ``kind`` (qr, card, manual, permit, lookup; sign_in, match and holder_*
for the e-card platform's holder calls), ``profile``, ``pn``
(permit number; a bulk look-up names the permits it showed, comma-separated, with
the counts ``asked`` and ``missing``), ``result``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from verifier.api.audit.history import INDEX, INDEX_CHUNK, WRITE, HistoryPolicy
from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = ["AUDIT_STREAM", "AuditLog"]

AUDIT_STREAM = "pv:audit"
FLUSH_INTERVAL_S = 0.25
"""How often the maintenance task flushes (verifier/api/verdicts/index_view.py REFRESH_S is the same tick)."""
BATCH = 1000
BATCH_BYTES = 128 * 1024
PIPELINE_BYTES = 512 * 1024
_RECORD_BYTES = 160
"""About what a record takes besides its permit numbers (for the byte bounds)."""
BUFFER_LIMIT = 200_000
STREAM_MAXLEN = 1_000_000
"""Stream entries kept (approximately): up to a billion records. Export before they are trimmed."""

log = logging.getLogger("verifier.audit")


class AuditLog:
    """One worker's audit buffer."""

    __slots__ = ("_redis", "_buffer", "dropped", "written", "history")

    def __init__(self, redis: AsyncRedisClient, history: HistoryPolicy | None = None) -> None:
        self._redis = redis
        self.history = history or HistoryPolicy()
        self._buffer: list[dict[str, str]] = []
        self.dropped = 0
        self.written = 0

    def record(
        self,
        *,
        key_id: str,
        role: str,
        kind: str,
        result: str,
        terminal: str = "",
        profile: str = "",
        permit_number: str = "",
        **extra: str,
    ) -> None:
        entry = {
            "t": int(time.time() * 1000),
            "key": key_id,
            "role": role,
            "terminal": terminal,
            "kind": kind,
            "profile": profile,
            "pn": permit_number,
            "result": result,
        }
        if extra:
            entry.update(extra)
        self._buffer.append(entry)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._buffer)

    async def flush(self) -> int:
        """Write the buffer to the stream; returns the records written (0 when Redis failed
        before any was)."""
        if not self._buffer:
            return 0
        records, self._buffer = self._buffer, []
        written = 0
        retention, cap = self.history.retention_ms, self.history.cap
        try:
            for pipeline in _pipelines(records):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for batch in pipeline:
                        skip, chunks = _large_records(batch)
                        # EVAL, not EVALSHA: the same in every kind of pipeline (cluster too),
                        # and ~2 KB of script beside a batch of up to 128 KB
                        pipe.eval(WRITE, 1, AUDIT_STREAM, orjson.dumps(batch), retention, cap, skip, STREAM_MAXLEN)
                        for chunk in chunks:
                            pipe.eval(INDEX, 1, AUDIT_STREAM, orjson.dumps([chunk]), retention, cap, "")
                    await pipe.execute()
                written += sum(len(batch) for batch in pipeline)
        except REDIS_UNAVAILABLE:
            # Keep what was not written for the next flush, oldest first; bound what an outage can hold.
            self._buffer = records[written:] + self._buffer
            excess = len(self._buffer) - BUFFER_LIMIT
            if excess > 0:
                del self._buffer[:excess]
                self.dropped += excess
                log.warning("audit buffer full while Redis is unreachable: dropped %d records", excess)
            self.written += written
            return written
        self.written += written
        return written


def _large_records(batch: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The records of ``batch`` that name more than INDEX_CHUNK permits (bulk look-ups), as
    WRITE's skip list, and their permits in chunks of INDEX_CHUNK for INDEX calls."""
    skip: list[str] = []
    chunks: list[dict[str, Any]] = []
    for i, record in enumerate(batch, 1):
        if record["pn"].count(",") < INDEX_CHUNK:
            continue
        skip.append(str(i))
        permits = record["pn"].split(",")
        for start in range(0, len(permits), INDEX_CHUNK):
            chunks.append({**record, "pn": ",".join(permits[start:start + INDEX_CHUNK])})
    return ("," + ",".join(skip) + ",") if skip else "", chunks


def _pipelines(records: list[dict[str, Any]]) -> list[list[list[dict[str, Any]]]]:
    """The records in stream entries (at most BATCH records, about BATCH_BYTES), and the
    entries in pipelines of about PIPELINE_BYTES, in order."""
    pipelines: list[list[list[dict[str, Any]]]] = []
    pipeline: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    batch_bytes = pipeline_bytes = 0
    for record in records:
        size = len(record["pn"]) + _RECORD_BYTES
        if batch and (len(batch) >= BATCH or batch_bytes + size > BATCH_BYTES):
            pipeline.append(batch)
            batch, batch_bytes = [], 0
            if pipeline_bytes >= PIPELINE_BYTES:
                pipelines.append(pipeline)
                pipeline, pipeline_bytes = [], 0
        batch.append(record)
        batch_bytes += size
        pipeline_bytes += size
    if batch:
        pipeline.append(batch)
    if pipeline:
        pipelines.append(pipeline)
    return pipelines
