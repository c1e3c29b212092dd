"""Fixtures of the notification suite: the index's Redis, a separate store of record, an
index writer holding the leader lock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from verifier.index import ChangeEvent, IndexWriter
from verifier.index.records import Card, EventType, PermitRecord
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis
from verifier.lib.settings import Settings

from .support import FAST

EMPLOYER_A = "91110000100000000A"
EMPLOYER_B = "91310000200000000B"


def permit(i: int, v: int = 1, **changes: Any) -> PermitRecord:
    fields: dict[str, Any] = dict(
        pn=f"WP110000202{i:07d}", n=f"NAME {i}", nat="DEU", dob="1985-03-04", cat="B", emp=EMPLOYER_A,
        vf="2024-01-01", vt="2027-12-31", v=v, ssn=f"9{i:08d}", cards=(Card(f"C{i:09d}", "active"),),
    )
    fields.update(changes)
    return PermitRecord(**fields)


class Feed:
    """The index written as the sync job writes it: a snapshot, then pages of changes."""

    def __init__(self, redis_sync: Any) -> None:
        self.writer = IndexWriter(redis_sync)
        fence = self.writer.acquire_leadership("notify-tests", ttl_s=600)
        assert fence is not None
        self.fence = fence
        self.seq = 0
        self.records: dict[str, PermitRecord] = {}
        self.feed_id = "feed-1"

    def load(self, records: list[PermitRecord], seq: int = 0, feed_id: str = "feed-1") -> None:
        load = self.writer.begin_snapshot(self.fence, expected_count=len(records))
        load.add(records)
        load.commit(seq, feed_id)
        self.seq, self.feed_id = seq, feed_id
        self.records.update({r.pn: r for r in records})

    def change(self, record: PermitRecord, kind: EventType = "change", at: float | None = None) -> ChangeEvent:
        return self.page([(record, kind)], at)[0]

    def page(self, changes: list[tuple[PermitRecord, EventType]], at: float | None = None) -> list[ChangeEvent]:
        import time

        events = []
        for record, kind in changes:
            self.seq += 1
            events.append(ChangeEvent(seq=self.seq, time=at if at is not None else time.time(), type=kind,
                                      permit=record))
            self.records[record.pn] = record
        self.writer.apply_page(events, cursor_before=events[0].seq - 1, fence=self.fence)
        return events

    def bump(self, pn: str, kind: EventType = "change", **changes: Any) -> ChangeEvent:
        import msgspec

        old = self.records[pn]
        return self.change(msgspec.structs.replace(old, v=old.v + 1, **changes), kind)


@pytest.fixture
def store_server(redis_server_factory: Callable[..., EmbeddedRedis]) -> EmbeddedRedis:
    """The store of record: a Redis of its own, apart from the index's."""
    return redis_server_factory()


@pytest.fixture
def store_sync(store_server: EmbeddedRedis) -> Iterator[Any]:
    client = sync_client(store_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def feed(redis_sync: Any) -> Feed:
    return Feed(redis_sync)


@pytest.fixture
def settings(redis_url: str, store_server: EmbeddedRedis) -> Settings:
    return Settings(redis_url=redis_url, store_url=store_server.url, **FAST)  # type: ignore[arg-type]
