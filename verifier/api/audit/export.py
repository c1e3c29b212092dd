"""Export the audit stream as NDJSON (``verifier audit export --since ... > file.ndjson``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, TextIO

import orjson

from verifier.api.audit.log import AUDIT_STREAM
from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["export_audit", "parse_since"]

_CHUNK = 200
# A batch is written after its records were made (by up to a flush, or an outage,
# later) and stamped by the Redis server's clock: read from a little before `since`
# and select by each record's own time.
_CLOCK_MARGIN_MS = 60_000


def parse_since(text: str) -> float:
    """Epoch seconds from ``1767225600``, ``2026-01-01``, or an RFC 3339 time (naive = UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _line(record: dict[str, Any]) -> bytes:
    millis = int(record.pop("t", 0))
    out = {
        "time": dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc).isoformat(timespec="milliseconds"),
        "key_id": record.pop("key", ""),
        "role": record.pop("role", ""),
        "terminal": record.pop("terminal", ""),
        "kind": record.pop("kind", ""),
        "profile": record.pop("profile", ""),
        "permit_number": record.pop("pn", ""),
        "result": record.pop("result", ""),
        **record,
    }
    return orjson.dumps(out) + b"\n"


async def export_audit(redis: AsyncRedisClient, out: TextIO, since: float = 0.0, until: float | None = None) -> int:
    """Write every audit record made from ``since`` (epoch s) up to ``until`` as one JSON object a line,
    oldest batch first; returns the count."""
    since_ms = int(since * 1000)
    until_ms = int(until * 1000) if until is not None else None
    start = f"{max(0, since_ms - _CLOCK_MARGIN_MS)}-0"
    count = 0
    while True:
        entries = await redis.xrange(AUDIT_STREAM, min=start, max="+", count=_CHUNK)
        for _entry_id, fields in entries:
            batch = fields.get(b"r") or fields.get("r")
            if batch is None:
                continue
            for record in orjson.loads(batch):
                t = int(record.get("t", 0))
                if t >= since_ms and (until_ms is None or t < until_ms):
                    out.write(_line(record).decode())
                    count += 1
        if len(entries) < _CHUNK:
            break
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)
    return count
