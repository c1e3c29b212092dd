"""``verifier audit verify``: check the hash chain and the signed checkpoints of the audit, wherever it is.

Three sources, each checked by :class:`~verifier.api.audit.chain.ChainVerifier`:

- the live stream of the store of record (:func:`verify_stream`): each shard from its
  first record, or from where retention trimmed it (``{pv:audit}:trimmed``), to the
  store's head of the shard (so records deleted at the end are found too);
- exports (:func:`verify_exports`, ``verifier audit export`` or retention's archives,
  several files in order): an export may begin at any time, so each shard's first
  record in it is taken as it stands and the chain is checked from there (begin with
  the oldest archive to check from record 1);
- an audit folder's files (:func:`verify_files`; a shard's oldest files may have been
  moved to the archive, so each shard is checked from its first file on).

The checkpoints must be signed by a trusted key: ``--keys FILE`` (a JWK Set, as
``verifier audit keys`` prints it; pin it when a host is set up), else the keys the
store publishes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import orjson

from verifier.api.audit.chain import ChainVerifier, Link
from verifier.api.audit.export import entries, stored_form
from verifier.api.audit.files import shard_folders
from verifier.api.audit.stream import read_anchors, read_heads
from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["report_lines", "verify_exports", "verify_files", "verify_stream"]


async def verify_stream(store: AsyncRedisClient, keys: dict[str, bytes]) -> ChainVerifier:
    # The heads first: a shard's records appended while we read are then simply more than its head.
    heads: dict[str, Link] = await read_heads(store)
    verifier = ChainVerifier(keys, anchors=await read_anchors(store))
    async for entry, records in entries(store):
        for i, record in enumerate(records, 1):
            verifier.check(record, f"stream entry {entry} record {i}")
    verifier.finish(heads, where="the store's heads")
    return verifier


def verify_exports(paths: Iterable[str], keys: dict[str, bytes]) -> ChainVerifier:
    verifier = ChainVerifier(keys, partial=True)
    for path in paths:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")
        try:
            for number, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                where = f"{'stdin' if path == '-' else path}:{number}"
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    verifier.check({"id": None, "h": None}, where)  # counted as a broken link
                    continue
                verifier.check(stored_form(line), where)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
    return verifier


def verify_files(audit_dir: Path, keys: dict[str, bytes]) -> ChainVerifier:
    # A shard's oldest files may have gone to the archive: its first file anchors it.
    verifier = ChainVerifier(keys, partial=True)
    for shard in shard_folders(audit_dir):
        for where, line in shard.lines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = {"id": None, "h": None}
            verifier.check(record, where)
    return verifier


def report_lines(verifier: ChainVerifier) -> list[str]:
    """What ``verifier audit verify`` prints: a line per shard, then the verdict."""
    lines = []
    for shard in sorted(verifier.shards.values(), key=lambda r: r.shard):
        sealed = f", sealed up to record {shard.last_checkpoint}" if shard.last_checkpoint else ", no valid checkpoint"
        start = "" if shard.first == 1 else f" (begins at record {shard.first})"
        lines.append(f"shard {shard.shard}: records {shard.first}..{shard.last}{start}, {shard.records} read, "
                     f"{shard.checkpoints} checkpoints{sealed}")
    if verifier.unchained:
        lines.append(f"{verifier.unchained} records without an id (written before the chain): not checked")
    total = sum(s.records for s in verifier.shards.values())
    if verifier.first_break is None:
        lines.append(f"OK: {len(verifier.shards)} shards, {total} records, every link holds")
    else:
        more = f" ({verifier.breaks - 1} more after it)" if verifier.breaks > 1 else ""
        lines.append(f"BROKEN: the first broken link: {verifier.first_break}{more}")
    return lines
