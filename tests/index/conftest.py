"""Fixtures of the index suite: records, events, and a writer that holds the leader lock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from verifier.index import ChangeEvent, IndexWriter, SyncPermitIndex
from verifier.index.records import Card, EventType, PermitRecord

T = TypeVar("T")

_seq = itertools.count(1)


def pn_of(i: int) -> str:
    return f"WP{i:010d}"


def make_record(i: int, v: int = 1, **changes: Any) -> PermitRecord:
    """A deterministic synthetic permit ``i`` at version ``v``."""
    fields: dict[str, Any] = dict(
        pn=pn_of(i), n=f"NAME {i}", nat="DEU", dob="1985-03-04", cat="B",
        emp="91310000MA1FL0000X", vf="2024-01-01", vt="2027-12-31", v=v,
        ssn=f"S{i:011d}", cards=(Card(f"C{i:09d}", "active"),),
    )
    fields.update(changes)
    return PermitRecord(**fields)


def event(seq: int, record: PermitRecord, type: EventType = "change") -> ChangeEvent:
    return ChangeEvent(seq=seq, time=1_700_000_000.0 + seq, type=type, permit=record)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Leader:
    """An IndexWriter with the leader lock and its fence."""

    def __init__(self, writer: IndexWriter, fence: int, owner: str) -> None:
        self.writer = writer
        self.fence = fence
        self.owner = owner

    def load(self, records: list[PermitRecord], seq: int = 0, feed_id: str = "feed-1") -> None:
        snapshot = self.writer.begin_snapshot(self.fence, expected_count=len(records))
        snapshot.add(records)
        snapshot.commit(seq, feed_id)

    def apply(self, events: list[ChangeEvent], cursor_before: int | None = None) -> Any:
        if cursor_before is None:
            cursor_before = self.writer.state().seq
        return self.writer.apply_page(events, cursor_before=cursor_before, fence=self.fence)


@pytest.fixture
def leader(redis_sync: Any) -> Iterator[Leader]:
    writer = IndexWriter(redis_sync)
    fence = writer.acquire_leadership("test-leader", ttl_s=60)
    assert fence is not None
    yield Leader(writer, fence, "test-leader")


@pytest.fixture
def reader(redis_sync: Any) -> SyncPermitIndex:
    return SyncPermitIndex(redis_sync)
