"""The simulated upstream's snapshots: the whole registry as of one sequence number.

A view at sequence number S copies the records that events changed (seeded ones are
immutable) and is streamed in chunks of CHUNK_RECORDS records, framed as
:mod:`verifier.lib.upstream_wire` says; encoded chunks are cached and reused until an
event touches one of their permits (the feed's ``chunk_versions``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from verifier.index.records import PermitRecord
from verifier.lib import upstream_wire as wire
from verifier.upstream.feed import PermitFeed
from verifier.upstream.population import CHUNK_RECORDS

__all__ = ["SnapshotView", "Snapshots"]


@dataclass(slots=True)
class SnapshotView:
    """What a snapshot at ``seq`` consists of; later events do not change it."""

    feed_id: str
    seq: int
    count: int
    time: float
    changed: dict[int, PermitRecord]
    chunk_versions: list[int]


@dataclass(slots=True)
class Snapshots:
    """Consistent views of the feed's permits, and their encoded stream."""

    feed: PermitFeed
    _chunk_cache: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    """chunk -> (its version when encoded, the encoded records)."""

    def view(self) -> SnapshotView:
        feed = self.feed
        with feed.lock:
            return SnapshotView(
                feed_id=feed.feed_id,
                seq=feed.seq,
                count=feed.count,
                time=feed.clock(),
                changed=feed.changed_records(),
                chunk_versions=list(feed.chunk_versions),
            )

    @property
    def cached_chunks(self) -> int:
        """How many chunks are held encoded."""
        return len(self._chunk_cache)

    def chunk_bytes(self, view: SnapshotView, c: int) -> bytes:
        """The msgpack array of the records of chunk ``c`` as of ``view``."""
        version = view.chunk_versions[c]
        cached = self._chunk_cache.get(c)
        if cached is not None and cached[0] == version:
            return cached[1]
        start = c * CHUNK_RECORDS
        stop = min(start + CHUNK_RECORDS, view.count)
        changed = view.changed
        base = self.feed.population.record
        records = [changed.get(i) or base(i) for i in range(start, stop)]
        data = msgspec.msgpack.encode(records)
        feed = self.feed
        with feed.lock:
            # keep it only if it is still the newest version of that chunk
            if c < len(feed.chunk_versions) and feed.chunk_versions[c] == version:
                self._chunk_cache[c] = (version, data)
        return data

    def frames(self, view: SnapshotView) -> Iterator[bytes]:
        """The snapshot stream of ``view``: header, record chunks, trailer (see ``wire``)."""
        header = wire.SnapshotHeader(
            format=wire.SNAPSHOT_FORMAT, feed_id=view.feed_id, seq=view.seq, count=view.count, time=view.time
        )
        yield wire.frame(wire.FRAME_HEAD, msgspec.msgpack.encode(header))
        for c in range(-(-view.count // CHUNK_RECORDS)):
            yield wire.frame(wire.FRAME_RECORDS, self.chunk_bytes(view, c))
        trailer = wire.SnapshotTrailer(count=view.count, seq=view.seq)
        yield wire.frame(wire.FRAME_TRAILER, msgspec.msgpack.encode(trailer))

    def warm(self) -> float:
        """Encode every snapshot chunk now (so the first full resync is not slowed by it)."""
        started = time.perf_counter()
        view = self.view()
        for c in range(len(view.chunk_versions)):
            self.chunk_bytes(view, c)
        return time.perf_counter() - started

    def records(self) -> Iterator[PermitRecord]:
        """Every permit now (tests and the CLI's own checks)."""
        view = self.view()
        base = self.feed.population.record
        for i in range(view.count):
            yield view.changed.get(i) or base(i)
