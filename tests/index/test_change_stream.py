"""The change stream: each applied change appended by the script that applies it."""

from __future__ import annotations

from typing import Any

import pytest

from verifier.index import IndexWriter, PermitIndexError
from verifier.index.change_stream import ChangeEntry, decode_entry
from verifier.index.keys import KeyLayout

from .conftest import Leader, event, make_record, pn_of

pytestmark = pytest.mark.integration

OTHER_EMPLOYER = "91110000MA00000001"


def entries(redis_sync: Any) -> list[ChangeEntry]:
    return [decode_entry(i, f) for i, f in redis_sync.xrange(KeyLayout().changelog)]


def test_a_snapshot_switch_is_marked(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(i) for i in range(3)], seq=40, feed_id="feed-A")
    [marker] = entries(redis_sync)
    assert (marker.kind, marker.seq, marker.feed) == ("switch", 40, "feed-A")
    assert marker.generation == leader.writer.state().generation


def test_each_applied_change_is_an_entry_in_seq_order(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(i) for i in range(3)], seq=10, feed_id="feed-A")
    leader.apply([
        event(12, make_record(1, v=3, status="cancelled", emp=OTHER_EMPLOYER), "cancel"),
        event(11, make_record(1, v=2, emp=OTHER_EMPLOYER), "change"),  # out of order on the page
        event(13, make_record(7), "issue"),
    ])
    _marker, *changes = entries(redis_sync)
    assert [(c.kind, c.seq, c.pn) for c in changes] == [
        ("change", 11, pn_of(1)), ("cancel", 12, pn_of(1)), ("issue", 13, pn_of(7))]
    # each with the record after that very change, the upstream's time and the page's cursor
    assert changes[0].record == make_record(1, v=2, emp=OTHER_EMPLOYER)
    assert changes[1].record is not None and changes[1].record.status == "cancelled"
    assert changes[0].time == 1_700_000_011.0 and {c.cursor_before for c in changes} == {10}
    assert {c.feed for c in changes} == {"feed-A"}
    # the employer the change moved the permit away from; none for the others
    assert [c.previous_employer for c in changes] == [make_record(1).emp, "", ""]


def test_a_replayed_page_appends_nothing(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(i) for i in range(3)], seq=10)
    page = [event(11, make_record(0, v=2)), event(12, make_record(1, v=2))]
    leader.apply(page, cursor_before=10)
    before = entries(redis_sync)
    leader.apply(page, cursor_before=10)
    assert entries(redis_sync) == before and len(before) == 3


def test_no_ops_past_the_last_change_leave_a_cursor_entry(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(0, v=5), make_record(1)], seq=1)
    leader.apply([event(2, make_record(1, v=2)), event(3, make_record(0, v=4))])  # 3: the version guard
    *_, change, cursor = entries(redis_sync)
    assert (change.kind, change.seq) == ("change", 2)
    assert (cursor.kind, cursor.cursor_before, cursor.cursor_after) == ("cursor", 1, 3)
    leader.apply([event(4, make_record(0, v=5))])  # a page of no-ops only
    last = entries(redis_sync)[-1]
    assert (last.kind, last.cursor_before, last.cursor_after) == ("cursor", 3, 4)


def test_a_refused_page_appends_nothing(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(0)], seq=1)
    before = entries(redis_sync)
    stale = IndexWriter(redis_sync)
    with pytest.raises(PermitIndexError):
        stale.apply_page([event(2, make_record(0, v=2))], cursor_before=1, fence=leader.fence - 1)
    assert entries(redis_sync) == before


def test_the_stream_is_bounded(redis_sync: Any) -> None:
    writer = IndexWriter(redis_sync, change_stream_maxlen=100)
    fence = writer.acquire_leadership("bounded", ttl_s=60)
    assert fence is not None
    leader = Leader(writer, fence, "bounded")
    leader.load([make_record(i) for i in range(10)], seq=0)
    for page in range(10):
        leader.apply([event(page * 100 + k + 1, make_record(k % 10, v=page * 10 + k // 10 + 2)) for k in range(100)])
    length = redis_sync.xlen(KeyLayout().changelog)
    # MAXLEN ~ trims whole nodes: a little over the bound, never the 1,001 entries written
    assert 100 <= length < 300
    assert entries(redis_sync)[-1].seq == 1000
