"""The audit stream as NDJSON (``verifier audit export --since ... > file.ndjson``), and back.

An exported line names the fields in full (``time`` as RFC 3339 UTC with milliseconds,
``key_id``, ``role``, ``terminal``, ``kind``, ``profile``, ``permit_number``,
``result``), then the record's other fields as stored (``id``, ``h``, a look-up's
``by``/``asked``/``missing``, a checkpoint's ``covers``/``head``/``kid``/``sig``).
:func:`stored_form` turns a line back into the record as stored, exactly, so that
``verifier audit verify`` can check an export's hash chain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any, TextIO

import orjson

from verifier.api.audit.stream import AUDIT_STREAM
from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["entries", "export_audit", "exported_form", "parse_since", "stored_form"]

_CHUNK = 200
# A batch is written after its records were made (by up to a flush, or an outage,
# later) and stamped by the Redis server's clock: read from a little before `since`
# and select by each record's own time.
_CLOCK_MARGIN_MS = 60_000
# stored name -> exported name, in the exported order
_NAMES = (("t", "time"), ("key", "key_id"), ("role", "role"), ("terminal", "terminal"), ("kind", "kind"),
          ("profile", "profile"), ("pn", "permit_number"), ("result", "result"))


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


def _rfc3339(millis: int) -> str:
    seconds, ms = divmod(millis, 1000)
    when = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(microsecond=ms * 1000)
    return when.isoformat(timespec="milliseconds")


def exported_form(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record as an export line names it."""
    rest = dict(record)
    out: dict[str, Any] = {"time": _rfc3339(int(rest.pop("t", 0)))}
    for stored, name in _NAMES[1:]:
        out[name] = rest.pop(stored, "")
    out.update(rest)
    return out


def stored_form(line: Mapping[str, Any]) -> dict[str, Any]:
    """An export line back as the record was stored (the inverse of :func:`exported_form`)."""
    rest = dict(line)
    when = dt.datetime.fromisoformat(str(rest.pop("time", "1970-01-01T00:00:00+00:00")))
    out: dict[str, Any] = {"t": round(when.timestamp() * 1000)}
    for stored, name in _NAMES[1:]:
        out[stored] = rest.pop(name, "")
    out.update(rest)
    return out


async def entries(store: AsyncRedisClient, start: str = "-", end: str = "+") -> AsyncIterator[tuple[str, list[Any]]]:
    """``(entry id, records)`` of every stream entry from ``start`` to ``end`` (ids, inclusive), oldest first."""
    while True:
        chunk = await store.xrange(AUDIT_STREAM, min=start, max=end, count=_CHUNK)
        for entry_id, fields in chunk:
            batch = fields.get(b"r") or fields.get("r")
            entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            yield entry, orjson.loads(batch) if batch is not None else []
        if len(chunk) < _CHUNK:
            return
        last = chunk[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)


async def export_audit(store: AsyncRedisClient, out: TextIO, since: float = 0.0, until: float | None = None,
                       *, progress: bool = False) -> int:
    """Write every audit record made from ``since`` (epoch s) up to ``until`` as one JSON object a line,
    oldest batch first; returns the count. ``progress``: a bar (verifier.lib.progress) over the time
    span, by the stream entries' times."""
    since_ms = int(since * 1000)
    until_ms = int(until * 1000) if until is not None else None
    count = 0
    start_ms = max(0, since_ms - _CLOCK_MARGIN_MS)
    bar = None
    if progress:
        from verifier.lib.progress import Bar

        end_ms = until_ms if until_ms is not None else await _last_entry_ms(store, start_ms)
        bar = Bar("audit export", round(max(0, end_ms - start_ms) / 1000), unit="s of the stream")
    try:
        async for entry, records in entries(store, f"{start_ms}-0"):
            if bar is not None:
                bar.update(min(bar.total or 0, round((int(entry.split("-", 1)[0]) - start_ms) / 1000)))
            count += _write(out, records, since_ms, until_ms)
        if bar is not None:
            bar.update(bar.total or 0)
    finally:
        if bar is not None:
            bar.finish()
    return count


async def _last_entry_ms(store: AsyncRedisClient, floor_ms: int) -> int:
    last = await store.xrevrange(AUDIT_STREAM, count=1)
    if not last:
        return floor_ms
    entry_id = last[0][0]
    return int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-", 1)[0])


def _write(out: TextIO, records: list[Any], since_ms: int, until_ms: int | None) -> int:
    count = 0
    for record in records:
        t = int(record.get("t", 0))
        if t >= since_ms and (until_ms is None or t < until_ms):
            out.write(orjson.dumps(exported_form(record)).decode() + "\n")
            count += 1
    return count
