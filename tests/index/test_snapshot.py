"""Full resync: a new generation loaded beside the live one and switched in atomically."""

from __future__ import annotations

from typing import Any

import pytest

from verifier.index import (
    IndexNotReady,
    IndexWriter,
    PermitIndex,
    SnapshotAborted,
    StaleFence,
    SyncPermitIndex,
    decode_change,
)
from verifier.index.keys import KeyLayout
from verifier.lib.redis_client import async_client

from .conftest import Leader, make_record, pn_of, run

pytestmark = pytest.mark.integration


def _keys_of(redis_sync: Any, generation: int) -> list[bytes]:
    return list(redis_sync.scan_iter(match=KeyLayout().prefix(generation) + b"*", count=1000))


def test_empty_redis_is_not_ready(redis_sync: Any, reader: SyncPermitIndex) -> None:
    with pytest.raises(IndexNotReady):
        reader.get(pn_of(1))
    with pytest.raises(IndexNotReady):
        reader.get_many("ssn", ["S1"])
    assert reader.freshness().ready is False
    assert IndexWriter(redis_sync).state().ready is False


def test_unfinished_first_load_is_not_ready(leader: Leader, reader: SyncPermitIndex) -> None:
    load = leader.writer.begin_snapshot(leader.fence)
    load.add([make_record(i) for i in range(50)])
    with pytest.raises(IndexNotReady):  # never "not found" from a half-loaded index
        reader.get(pn_of(1))
    assert not leader.writer.state().ready
    load.commit(5, "feed-1")
    assert reader.get(pn_of(1)) == make_record(1)


def test_load_and_commit(leader: Leader, reader: SyncPermitIndex, redis_sync: Any) -> None:
    records = [make_record(i) for i in range(2500)]
    load = leader.writer.begin_snapshot(leader.fence, expected_count=len(records))
    for start in range(0, len(records), 1000):
        assert load.add(records[start:start + 1000]) == len(records[start:start + 1000])
    assert load.commit(42, "feed-A", upstream_time=1_800_000_000.0) is None
    state = leader.writer.state()
    assert (state.ready, state.seq, state.feed_id, state.count) == (True, 42, "feed-A", 2500)
    assert state.upstream_time == 1_800_000_000.0
    assert reader.get_many("pn", [r.pn for r in records]) == {r.pn: r for r in records}
    assert {k: v.pn for k, v in reader.get_many("ssn", [r.ssn for r in records if r.ssn]).items()} == {
        r.ssn: r.pn for r in records
    }
    assert reader.get(pn_of(999_999)) is None
    # The look-up buckets stayed compact listpacks.
    bucket = next(redis_sync.scan_iter(match=KeyLayout().ssn_prefix(state.generation or 0) + b"*"))
    assert redis_sync.object("encoding", bucket) == b"listpack"


def test_reader_sees_the_old_generation_complete_until_the_switch(
    leader: Leader, redis_sync: Any, redis_url: str
) -> None:
    leader.load([make_record(i, v=1) for i in range(300)], seq=10)
    old_generation = leader.writer.state().generation
    assert old_generation is not None
    reader = SyncPermitIndex(redis_sync)
    assert reader.get(pn_of(7)).v == 1

    load = leader.writer.begin_snapshot(leader.fence, expected_count=300)
    load.add([make_record(i, v=2, n="NEW") for i in range(150)])  # half the new generation
    # During the load every reader (new or holding the old pointer) sees the old one, whole.
    fresh_reader = SyncPermitIndex(redis_sync)
    everything = [pn_of(i) for i in range(300)]
    for r in (reader, fresh_reader):
        seen = r.get_many("pn", everything)
        assert len(seen) == 300 and {x.v for x in seen.values()} == {1}
        assert r.freshness().generation == old_generation

    async def async_read() -> dict[str, Any]:
        client = async_client(redis_url)
        try:
            return await PermitIndex(client).get_many("pn", everything)
        finally:
            await client.aclose()

    assert {x.v for x in run(async_read()).values()} == {1}
    load.add([make_record(i, v=2, n="NEW") for i in range(150, 300)])
    load.commit(20, "feed-1")
    # The reader holding the old pointer notices the switch in the same MGET and retries.
    seen = reader.get_many("pn", everything)
    assert len(seen) == 300 and {x.n for x in seen.values()} == {"NEW"}
    assert reader.get_many("ssn", [make_record(5).ssn or ""])[make_record(5).ssn or ""].v == 2
    assert _keys_of(redis_sync, old_generation) == []  # dropped after the switch
    assert leader.writer.generations() == [leader.writer.state().generation]


def test_switch_removes_permits_missing_from_the_snapshot(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(i) for i in range(10)], seq=1)
    leader.load([make_record(i) for i in range(5)], seq=2)
    assert reader.get(pn_of(7)) is None
    assert reader.get_many("ssn", [make_record(7).ssn or ""]) == {}
    assert leader.writer.state().count == 5


def test_abort_drops_the_load_and_keeps_the_live_generation(
    leader: Leader, reader: SyncPermitIndex, redis_sync: Any
) -> None:
    leader.load([make_record(i) for i in range(10)], seq=1)
    load = leader.writer.begin_snapshot(leader.fence)
    load.add([make_record(i, v=9) for i in range(10)])
    load.abort()
    assert _keys_of(redis_sync, load.generation) == []
    assert reader.get(pn_of(3)).v == 1
    with pytest.raises(SnapshotAborted):
        load.add([make_record(1)])


def test_orphaned_load_is_dropped_by_the_next_one(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(i) for i in range(10)], seq=1)
    orphan = leader.writer.begin_snapshot(leader.fence)  # a leader that died mid-load
    orphan.add([make_record(i, v=3) for i in range(10)])
    fresh = leader.writer.begin_snapshot(leader.fence)
    assert _keys_of(redis_sync, orphan.generation) == []
    with pytest.raises(SnapshotAborted):  # the dead leader's load cannot come back
        orphan.add([make_record(1, v=4)])
    with pytest.raises(SnapshotAborted):
        orphan.commit(5, "feed-1")
    fresh.add([make_record(1, v=5)])
    fresh.commit(6, "feed-1")
    assert SyncPermitIndex(redis_sync).get(pn_of(1)).v == 5


def test_commit_with_a_stale_fence_is_refused(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(i) for i in range(3)], seq=1)
    load = leader.writer.begin_snapshot(leader.fence)
    load.add([make_record(i, v=2) for i in range(3)])
    redis_sync.delete(KeyLayout().leader)
    assert IndexWriter(redis_sync).acquire_leadership("other", ttl_s=30) is not None
    with pytest.raises(StaleFence):
        load.commit(2, "feed-1")
    assert SyncPermitIndex(redis_sync).get(pn_of(1)).v == 1


def test_commit_publishes_a_switch(leader: Leader, redis_sync: Any) -> None:
    pubsub = redis_sync.pubsub()
    pubsub.subscribe(KeyLayout().channel)
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    leader.load([make_record(1)], seq=3)
    message = pubsub.get_message(timeout=5)
    pubsub.close()
    change = decode_change(message["data"])
    assert (change.kind, change.seq, change.permit_numbers) == ("switch", 3, [])
    assert change.generation == leader.writer.state().generation


def test_flushall_makes_the_index_not_ready(leader: Leader, redis_sync: Any, redis_url: str) -> None:
    leader.load([make_record(i) for i in range(3)], seq=1)
    reader = SyncPermitIndex(redis_sync)
    assert reader.get(pn_of(1)) is not None
    redis_sync.flushall()
    with pytest.raises(IndexNotReady):
        reader.get(pn_of(1))
    with pytest.raises(IndexNotReady):
        reader.get_many("cn", [make_record(1).cn or ""])
    assert reader.freshness().ready is False
    assert leader.writer.state().ready is False

    async def async_read() -> None:
        client = async_client(redis_url)
        try:
            with pytest.raises(IndexNotReady):
                await PermitIndex(client).get(pn_of(1))
        finally:
            await client.aclose()

    run(async_read())


def test_snapshot_with_an_ssn_on_two_permits(leader: Leader, reader: SyncPermitIndex) -> None:
    # The same person's earlier permit (cancelled) and their current one share the ssn.
    old = make_record(1, ssn="S-SHARED", status="cancelled", vt="2025-06-30")
    new = make_record(2, ssn="S-SHARED")
    leader.load([old, new, make_record(3)], seq=1)
    assert reader.get_many("ssn", ["S-SHARED"])["S-SHARED"].pn == pn_of(2)
