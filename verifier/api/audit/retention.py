"""Retention of the audit stream by age and by size, each entry exported before it is trimmed; and restore.

``verifier audit retain --archive DIR [--max-age-days D] [--max-mb M]`` (run it daily
from a timer; see README):

1. finds the cut: the oldest entries whose records are all older than ``D`` days, and
   as many more of the oldest as bring the stream under ``M`` MB (what ``XTRIM MAXLEN``
   would keep, from the stream's ``MEMORY USAGE`` and length);
2. writes those entries' records to ``DIR/audit-<first entry>-<last entry>.ndjson``
   (the export's format), fsyncs it and its folder, and only then
3. trims them with ``XTRIM MINID`` (the id after the last exported entry: an entry
   added meanwhile is newer, so exactly what was exported goes, never more, which a
   ``MAXLEN`` trim could not promise), and records each trimmed shard's last record
   in ``{pv:audit}:trimmed``, where ``audit verify`` begins the live chain now.

One run at a time (a lock in the store). The archives verify with ``verifier audit
verify DIR/audit-*.ndjson``, oldest first, with the live stream after them.

``verifier audit restore`` (:func:`restore_from_files`) puts an audit folder's records
back into a store that lacks them (a store that was lost, or replaced), through the
same idempotent APPEND as the workers: records the stream has are not written again.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from verifier.api.audit.chain import Link, parse_id
from verifier.api.audit.export import entries, exported_form
from verifier.api.audit.files import shard_folders
from verifier.api.audit.history import HistoryPolicy
from verifier.api.audit.stream import AUDIT_STREAM, TRIMMED_KEY, deliver, head_key
from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["Restored", "Retained", "RetentionBusy", "restore_from_files", "retain"]

_LOCK_KEY = "{pv:audit}:retain-lock"
_LOCK_MS = 3_600_000
_RESTORE_CHUNK = 4 * 1024 * 1024


class RetentionBusy(RuntimeError):
    """Another retention run holds the lock."""


@dataclass
class Retained:
    entries: int = 0
    records: int = 0
    archive: Path | None = None
    shards: dict[str, Link] = field(default_factory=dict)
    """The last record trimmed of each shard."""


def _next_id(entry_id: str) -> str:
    millis, _, seq = entry_id.partition("-")
    return f"{millis}-{int(seq) + 1}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _entries_over_size(store: AsyncRedisClient, max_bytes: float) -> int:
    """How many of the oldest entries must go for the stream to fit in ``max_bytes`` (0: it fits)."""
    length = await store.xlen(AUDIT_STREAM)
    usage = await store.memory_usage(AUDIT_STREAM) or 0
    if not length or usage <= max_bytes:
        return 0
    return math.ceil(length * (1 - max_bytes / usage))


async def retain(store: AsyncRedisClient, archive_dir: Path, *, max_age_days: float | None = None,
                 max_mb: float | None = None, now: float | None = None) -> Retained:
    """Export, then trim, what the bounds leave out. Raises RetentionBusy, OSError (nothing trimmed then)."""
    if max_age_days is None and max_mb is None:
        raise ValueError("retention needs --max-age-days, --max-mb or both")
    token = secrets.token_hex(8)
    if not await store.set(_LOCK_KEY, token, nx=True, px=_LOCK_MS):
        raise RetentionBusy("another `verifier audit retain` is running (lock {pv:audit}:retain-lock)")
    try:
        return await _retain(store, archive_dir, max_age_days, max_mb, time.time() if now is None else now)
    finally:
        if (await store.get(_LOCK_KEY)) in (token, token.encode()):
            await store.delete(_LOCK_KEY)


async def _retain(store: AsyncRedisClient, archive_dir: Path, max_age_days: float | None, max_mb: float | None,
                  now: float) -> Retained:
    cutoff_ms = (now - max_age_days * 86_400) * 1000 if max_age_days is not None else None
    over = await _entries_over_size(store, max_mb * 1024 * 1024) if max_mb is not None else 0
    done = Retained()
    archive_dir.mkdir(parents=True, exist_ok=True)
    partial = archive_dir / f".audit-retain-{os.getpid()}.partial"
    first_entry = last_entry = ""
    with open(partial, "wb") as out:
        async with contextlib.aclosing(entries(store)) as stream:
            async for entry, records in stream:
                too_old = cutoff_ms is not None and all(int(r.get("t", 0)) < cutoff_ms for r in records)
                if not (too_old or done.entries < over):
                    break
                first_entry = first_entry or entry
                last_entry = entry
                done.entries += 1
                for record in records:
                    out.write(orjson.dumps(exported_form(record)) + b"\n")
                    parsed = parse_id(record.get("id"))
                    if parsed is not None and isinstance(record.get("h"), str):
                        done.shards[parsed[0]] = Link(parsed[0], parsed[1], bytes.fromhex(record["h"]))
                done.records += len(records)
        out.flush()
        os.fsync(out.fileno())
    if not done.entries:
        partial.unlink()
        return done
    done.archive = archive_dir / f"audit-{first_entry}-{last_entry}.ndjson"
    os.replace(partial, done.archive)
    _fsync_dir(archive_dir)
    # Exported and on disk: now, and only now, out of the stream.
    await store.xtrim(AUDIT_STREAM, minid=_next_id(last_entry), approximate=False)
    if done.shards:
        await store.hset(TRIMMED_KEY, mapping={s: f"{link.seq}:{link.hash.hex()}" for s, link in done.shards.items()})
    return done


@dataclass
class Restored:
    shards: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per shard: the records taken, and the number of its first file's first record."""
    forked: list[str] = field(default_factory=list)
    """Shards whose files hold other records than the store under the same numbers (left as they are)."""


async def restore_from_files(store: AsyncRedisClient, audit_dir: Path, history: HistoryPolicy = HistoryPolicy()) -> Restored:
    """Deliver every record of the folder's shards that the store lacks (after each shard's head), their
    "who verified me" index with them."""
    restored = Restored()
    for shard in shard_folders(audit_dir):
        files = shard.files()
        if not files:
            continue
        seq = await store.hget(head_key(shard.name), "seq")
        head = int(seq) if seq is not None else 0
        taken = 0
        while True:
            lines = shard.read_after(head, _RESTORE_CHUNK)
            if not lines:
                break
            delivered = await deliver(store, shard.name, lines, adopt=True, history=history)
            if delivered.forked is not None:
                restored.forked.append(shard.name)
                break
            taken += delivered.taken
            head = lines[-1][0]
        restored.shards[shard.name] = (taken, files[0][0])
    return restored
