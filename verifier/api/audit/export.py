"""Export the audit stream as NDJSON (``verifier audit export --since ... > file.ndjson``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, TextIO

import orjson

from verifier.api.audit.log import AUDIT_STREAM

__all__ = ["export_audit", "parse_since"]

_CHUNK = 1000


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def export_audit(redis: Any, out: TextIO, since: float = 0.0, until: float | None = None) -> int:
    """Write every audit record from ``since`` (epoch s) up to ``until`` as one JSON object a line; returns the count."""
    start = f"{int(since * 1000)}-0"
    end = f"{int(until * 1000)}" if until is not None else "+"
    count = 0
    while True:
        entries = await redis.xrange(AUDIT_STREAM, min=start, max=end, count=_CHUNK)
        if not entries:
            break
        for raw_id, raw_fields in entries:
            entry_id = _text(raw_id)
            fields = {_text(k): _text(v) for k, v in raw_fields.items()}
            millis = int(fields.pop("t", entry_id.split("-")[0]))
            record = {
                "id": entry_id,
                "time": dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc).isoformat(timespec="milliseconds"),
                "key_id": fields.pop("key", ""),
                "role": fields.pop("role", ""),
                "terminal": fields.pop("terminal", ""),
                "kind": fields.pop("kind", ""),
                "profile": fields.pop("profile", ""),
                "permit_number": fields.pop("pn", ""),
                "result": fields.pop("result", ""),
                **fields,
            }
            out.write(orjson.dumps(record).decode() + "\n")
            count += 1
        if len(entries) < _CHUNK:
            break
        start = "(" + _text(entries[-1][0])
    return count
