"""Incremental apply: atomic with the cursor, idempotent, version-guarded, fenced."""

from __future__ import annotations

from typing import Any

import pytest

from verifier.index import (
    CursorMismatch,
    IndexNotReady,
    IndexWriter,
    StaleFence,
    SyncPermitIndex,
)
from verifier.index.keys import KeyLayout
from verifier.index.records import Card

from .conftest import Leader, event, make_record, pn_of

pytestmark = pytest.mark.integration


def test_apply_moves_cursor_and_replaces_records(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(i) for i in range(10)], seq=100)
    result = leader.apply([
        event(101, make_record(1, v=2, status="cancelled"), "cancel"),
        event(102, make_record(20, v=1), "issue"),
    ])
    assert (result.applied, result.unchanged, result.duplicates, result.cursor) == (2, 0, 0, 102)
    assert result.changed == [pn_of(1), pn_of(20)]
    assert reader.get(pn_of(1)).status == "cancelled"
    assert reader.get(pn_of(20)) == make_record(20)
    state = leader.writer.state()
    assert (state.seq, state.count) == (102, 11)


def test_replayed_page_is_a_no_op(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(i) for i in range(3)], seq=10)
    page = [event(11, make_record(0, v=2, n="CHANGED")), event(12, make_record(1, v=2, n="CHANGED"))]
    leader.apply(page, cursor_before=10)
    again = leader.apply(page, cursor_before=10)  # a sync job that died before learning the cursor
    assert (again.applied, again.duplicates, again.cursor, again.changed) == (0, 2, 12, [])
    assert reader.get(pn_of(0)).v == 2
    assert leader.writer.state().seq == 12


def test_overlapping_page_applies_only_the_new_part(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(i) for i in range(3)], seq=10)
    leader.apply([event(11, make_record(0, v=2))], cursor_before=10)
    result = leader.apply([event(11, make_record(0, v=2)), event(12, make_record(1, v=2))], cursor_before=10)
    assert (result.applied, result.duplicates, result.cursor) == (1, 1, 12)
    assert reader.get(pn_of(1)).v == 2


def test_version_guard_keeps_the_newer_record(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(0, v=5)], seq=1)
    result = leader.apply([event(2, make_record(0, v=4, status="cancelled")),
                           event(3, make_record(0, v=5, status="cancelled"))])
    assert (result.applied, result.unchanged, result.cursor) == (0, 2, 3)
    assert reader.get(pn_of(0)).status == "active"
    assert leader.writer.state().seq == 3  # the cursor moves past events the guard ignored


def test_several_versions_of_one_permit_in_a_page(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(0)], seq=1)
    # Out of order within the page: the highest version wins, whatever the order.
    result = leader.apply([event(4, make_record(0, v=4, n="FOUR")), event(2, make_record(0, v=2)),
                           event(3, make_record(0, v=3))])
    assert reader.get(pn_of(0)).n == "FOUR"
    assert result.changed == [pn_of(0)]
    assert result.cursor == 4


def test_cursor_ahead_of_the_index_is_refused(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(0)], seq=10)
    with pytest.raises(CursorMismatch) as caught:
        leader.apply([event(21, make_record(0, v=2))], cursor_before=20)
    assert caught.value.stored == 10
    assert reader.get(pn_of(0)).v == 1
    assert leader.writer.state().seq == 10


def test_stale_fence_is_refused_and_writes_nothing(redis_sync: Any, leader: Leader,
                                                   reader: SyncPermitIndex) -> None:
    leader.load([make_record(0)], seq=1)
    with pytest.raises(StaleFence):
        leader.writer.apply_page([event(2, make_record(0, v=2))], cursor_before=1, fence=leader.fence - 1)
    # A new leader takes over after the old lock expired: the old token is dead.
    redis_sync.delete(KeyLayout().leader)
    other = IndexWriter(redis_sync)
    new_fence = other.acquire_leadership("standby", ttl_s=60)
    assert new_fence is not None and new_fence > leader.fence
    with pytest.raises(StaleFence):
        leader.apply([event(2, make_record(0, v=2))], cursor_before=1)
    with pytest.raises(StaleFence):  # an all-duplicates page is refused too
        leader.apply([event(1, make_record(0, v=2))], cursor_before=1)
    with pytest.raises(StaleFence):
        leader.writer.heartbeat(1, None, leader.fence)
    with pytest.raises(StaleFence):
        leader.writer.begin_snapshot(leader.fence)
    assert reader.get(pn_of(0)).v == 1
    assert other.state().seq == 1
    assert other.apply_page([event(2, make_record(0, v=2))], cursor_before=1, fence=new_fence).applied == 1


def test_apply_without_a_live_generation_is_not_ready(leader: Leader) -> None:
    with pytest.raises(IndexNotReady):
        leader.apply([event(1, make_record(0))], cursor_before=0)


def test_leadership_lock(redis_sync: Any) -> None:
    a, b = IndexWriter(redis_sync), IndexWriter(redis_sync)
    fence = a.acquire_leadership("a", ttl_s=30)
    assert fence is not None
    assert b.acquire_leadership("b", ttl_s=30) is None
    assert a.acquire_leadership("a", ttl_s=30) == fence  # re-entrant for the holder
    assert a.renew_leadership("a", fence, ttl_s=30)
    assert not b.renew_leadership("b", fence, ttl_s=30)
    assert not b.release_leadership("b", fence)
    assert a.release_leadership("a", fence)
    assert not a.renew_leadership("a", fence, ttl_s=30)
    fence_b = b.acquire_leadership("b", ttl_s=30)
    assert fence_b is not None and fence_b > fence
    assert b.state().leader == f"{fence_b}:b"


def test_fence_keeps_growing_across_flushall(redis_sync: Any) -> None:
    writer = IndexWriter(redis_sync)
    first = writer.acquire_leadership("a", ttl_s=30)
    redis_sync.flushall()
    second = writer.acquire_leadership("b", ttl_s=30)
    assert first is not None and second is not None
    assert second > first


def test_lock_expiry_frees_leadership(redis_sync: Any) -> None:
    writer = IndexWriter(redis_sync)
    fence = writer.acquire_leadership("a", ttl_s=30)
    assert fence is not None
    redis_sync.pexpire(KeyLayout().leader, 1)  # as if the holder had stopped renewing
    while redis_sync.exists(KeyLayout().leader):
        pass
    assert writer.acquire_leadership("b", ttl_s=30) is not None
    assert not writer.renew_leadership("a", fence, ttl_s=30)


def test_heartbeat_marks_fresh_and_refuses_a_cursor_it_does_not_have(
    leader: Leader, reader: SyncPermitIndex
) -> None:
    leader.load([make_record(0)], seq=7)
    before = reader.freshness()
    assert before.ready and before.seq == 7
    now = leader.writer.heartbeat(7, 1_800_000_000.5, leader.fence)
    after = reader.freshness()
    assert after.as_of == pytest.approx(now)
    assert after.as_of is not None and before.as_of is not None and after.as_of >= before.as_of
    assert after.upstream_time == 1_800_000_000.5
    assert after.lag_s is not None and after.lag_s >= 0
    state = leader.writer.state()
    assert (state.heartbeat_seq, state.seq) == (7, 7)
    with pytest.raises(CursorMismatch) as caught:
        leader.writer.heartbeat(8, None, leader.fence)
    assert caught.value.stored == 7


@pytest.mark.parametrize("bad", [
    {"pn": "WP 1"},  # white space would split the look-up's list of permit numbers
    {"pn": ""},
    {"ssn": "S\x001"},
    {"ssn": ""},
    {"cards": (Card("", "active"),)},
])
def test_unusable_identifiers_are_refused(leader: Leader, reader: SyncPermitIndex, bad: dict[str, Any]) -> None:
    leader.load([make_record(1)], seq=1)
    with pytest.raises(ValueError):
        leader.apply([event(2, make_record(1, v=2, **bad))])
    with pytest.raises(ValueError):
        leader.writer.begin_snapshot(leader.fence).add([make_record(2, **bad)])
    assert leader.writer.state().seq == 1
    assert reader.get(pn_of(1)) == make_record(1)


def test_the_script_itself_guards_versions(leader: Leader, reader: SyncPermitIndex) -> None:
    """The Lua step refuses, before any write, a plan made on a record that changed
    or one that would not raise the version (belt and braces under the cursor check)."""
    from verifier.index import PermitIndexError
    from verifier.index.apply_plan import V_INDEX, ApplyArgs
    from verifier.index.records import encode_record

    leader.load([make_record(1, v=3)], seq=1)
    writer = leader.writer
    pointer = writer.pointer()
    assert pointer is not None
    keys = writer.keys

    def call(expected_old_v: int, new: Any) -> None:
        writer._call(
            writer._apply,
            [keys.current, keys.leader, keys.meta(pointer.generation),
             keys.record_prefix(pointer.generation) + new.pn.encode(), keys.changelog],
            ApplyArgs(pointer=pointer.raw, fence=leader.fence, stored_cursor=b"1", cursor=2, records=1, lookups=0,
                      channel=keys.channel, message=b"", v_index=V_INDEX, added=0, feed=b"feed-1",
                      stream_maxlen=100, entries=0, cursor_entry=1,
                      record_triples=[(expected_old_v, new.v, encode_record(new))], lookup_triples=[]).argv(),
        )

    with pytest.raises(PermitIndexError, match="RECORD_MOVED"):
        call(2, make_record(1, v=4, n="X"))  # planned on v2, the index holds v3
    with pytest.raises(PermitIndexError, match="VERSION_NOT_HIGHER"):
        call(3, make_record(1, v=3, n="X"))
    assert reader.get(pn_of(1)) == make_record(1, v=3)
    assert writer.state().seq == 1
    call(3, make_record(1, v=4, n="X"))
    assert reader.get(pn_of(1)).n == "X" and writer.state().seq == 2


@pytest.mark.parametrize("v", [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**40])
@pytest.mark.parametrize("name", ["A", "N" * 31, "N" * 32, "N" * 255, "N" * 256, "\u00c9" * 20])
def test_the_script_reads_the_stored_version_of_every_shape(leader: Leader, reader: SyncPermitIndex,
                                                            v: int, name: str) -> None:
    """APPLY steps over the record's str fields to read its ``v`` (cmsgpack for the shapes
    it does not step over: str16 names, 64-bit versions): every msgpack width of ``v``
    and of the fields before it gives the version msgspec wrote."""
    from verifier.index import PermitIndexError
    from verifier.index.apply_plan import V_INDEX, ApplyArgs
    from verifier.index.records import encode_record

    leader.load([make_record(1, v=v, n=name)], seq=1)
    writer = leader.writer
    pointer = writer.pointer()
    assert pointer is not None
    keys = writer.keys

    def call(expected_old_v: int, new: Any) -> None:
        writer._call(
            writer._apply,
            [keys.current, keys.leader, keys.meta(pointer.generation),
             keys.record_prefix(pointer.generation) + new.pn.encode(), keys.changelog],
            ApplyArgs(pointer=pointer.raw, fence=leader.fence, stored_cursor=b"1", cursor=2, records=1, lookups=0,
                      channel=keys.channel, message=b"", v_index=V_INDEX, added=0, feed=b"feed-1",
                      stream_maxlen=100, entries=0, cursor_entry=1,
                      record_triples=[(expected_old_v, new.v, encode_record(new))], lookup_triples=[]).argv(),
        )

    with pytest.raises(PermitIndexError, match="RECORD_MOVED"):
        call(v + 1, make_record(1, v=v + 2, n="X"))
    with pytest.raises(PermitIndexError, match="VERSION_NOT_HIGHER"):
        call(v, make_record(1, v=v, n="X"))
    call(v, make_record(1, v=v + 1, n="X"))
    assert reader.get(pn_of(1)) == make_record(1, v=v + 1, n="X")
