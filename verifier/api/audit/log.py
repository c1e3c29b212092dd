"""The audit trail: every verification and look-up, in a Redis stream.

Each answer appends one record to a per-worker buffer (no I/O on the request
path); a background task writes the buffer to the stream ``pv:audit`` in pipelined
batches every ``FLUSH_INTERVAL_S``, and the app's shutdown writes what is left, so
a clean stop loses nothing. Loss window on a crash (kill -9, power loss): the
records of the last ``FLUSH_INTERVAL_S`` (0.25 s) of that worker, plus, while Redis
is unreachable, what the worker holds for it (at most ``BUFFER_LIMIT`` records; past
that the oldest are dropped and counted in the log).

A record: time (the stream id's milliseconds, and ``t`` in epoch ms as the worker
saw it), key id, role, terminal, kind (qr, card, manual, permit, lookup), profile,
permit number(s), result. Bulk look-ups make one record per request with the
permit numbers found, comma-separated, and the counts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from verifier.api.redis_failures import REDIS_DOWN

__all__ = ["AUDIT_STREAM", "AuditLog"]

AUDIT_STREAM = "pv:audit"
FLUSH_INTERVAL_S = 0.25
BUFFER_LIMIT = 200_000
STREAM_MAXLEN = 20_000_000
"""The stream is trimmed (approximately) past this many records: export it before."""

log = logging.getLogger("verifier.audit")


class AuditLog:
    """One worker's audit buffer."""

    __slots__ = ("_redis", "_buffer", "dropped", "written")

    def __init__(self, redis: Any) -> None:
        self._redis = redis
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
            "t": str(int(time.time() * 1000)),
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
        self._buffer.append(entry)

    def __len__(self) -> int:
        return len(self._buffer)

    async def flush(self) -> int:
        """Write the buffer to the stream; returns the records written (0 when Redis failed)."""
        if not self._buffer:
            return 0
        batch, self._buffer = self._buffer, []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    pipe.xadd(AUDIT_STREAM, entry, maxlen=STREAM_MAXLEN, approximate=True)
                await pipe.execute()
        except REDIS_DOWN:
            # Keep them for the next flush, newest last; bound what an outage can hold.
            self._buffer = batch + self._buffer
            excess = len(self._buffer) - BUFFER_LIMIT
            if excess > 0:
                del self._buffer[:excess]
                self.dropped += excess
                log.warning("audit buffer full while Redis is unreachable: dropped %d records", excess)
            return 0
        self.written += len(batch)
        return len(batch)
