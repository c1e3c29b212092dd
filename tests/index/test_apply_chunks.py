"""A large page applied in chunks (IndexWriter._apply_chunks), each planned while Redis
runs the one before it: the same index, change stream and counts as the page applied
in small pages; a chunk refused part-way leaves a prefix applied with its cursor."""

from __future__ import annotations

from typing import Any

import pytest

from verifier.index import IndexWriter, StaleFence, SyncPermitIndex
from verifier.index import writer as writer_module
from verifier.index.change_stream import decode_entry
from verifier.index.keys import KeyLayout
from verifier.index.records import Card, ChangeEvent

from .conftest import event, make_record, pn_of

pytestmark = pytest.mark.integration

PERMITS = 300


def _page(first_seq: int) -> list[ChangeEvent]:
    """1,000 events over 300 permits and 100 new ones: several versions of a permit in
    one page (in different chunks), ssn and card changes, stale versions, and the
    events shuffled (the writer takes them in seq order)."""
    events: list[ChangeEvent] = []
    seq = first_seq
    for round_ in range(3):
        for i in range(PERMITS):
            seq += 1
            changes: dict[str, Any] = {"n": f"NAME {i} R{round_}"}
            if i % 7 == 0:
                changes["ssn"] = f"X{i:05d}R{round_}"
            if i % 11 == 0:
                changes["cards"] = (Card(f"C{i:09d}", "replaced"), Card(f"D{i:06d}R{round_}", "active"))
            v = 2 + round_ if i % 13 else 1  # every 13th: not newer than the loaded v=1, a no-op
            events.append(event(seq, make_record(i, v=v, **changes)))
    for i in range(PERMITS, PERMITS + 100):
        seq += 1
        events.append(event(seq, make_record(i), "issue"))
    events.reverse()
    return events


def _load(writer: IndexWriter, fence: int) -> None:
    load = writer.begin_snapshot(fence, expected_count=PERMITS)
    load.add([make_record(i) for i in range(PERMITS)])
    load.commit(10, "feed-1")


def _index(redis_sync: Any, namespace: str) -> dict[str, Any]:
    reader = SyncPermitIndex(redis_sync, namespace)
    writer = IndexWriter(redis_sync, namespace)
    records = reader.get_many("pn", [pn_of(i) for i in range(PERMITS + 100)])
    ssns = {r.ssn for r in records.values() if r.ssn}
    cns = {c.cn for r in records.values() for c in r.cards}
    stream = [decode_entry(ident, fields) for ident, fields in redis_sync.xrange(KeyLayout(namespace).changelog)]
    state = writer.state()
    return {
        "records": records,
        "by_ssn": {k: v.pn for k, v in reader.get_many("ssn", sorted(ssns)).items()},
        "by_cn": {k: v.pn for k, v in reader.get_many("cn", sorted(cns)).items()},
        "stream": [(e.kind, e.seq, e.pn, e.record) for e in stream if e.kind not in ("cursor", "switch")],
        "seq": state.seq, "count": state.count,
    }


def test_a_chunked_page_equals_the_page_in_small_pages(redis_sync: Any) -> None:
    chunked = IndexWriter(redis_sync, "pa")
    small = IndexWriter(redis_sync, "pb")
    fences = [w.acquire_leadership("t", ttl_s=60) for w in (chunked, small)]
    for w, fence in zip((chunked, small), fences):
        _load(w, fence)
    page = _page(10)
    assert len(page) >= 2 * writer_module.APPLY_CHUNK  # the chunked path
    result = chunked.apply_page(page, cursor_before=10, fence=fences[0])

    ordered = sorted(page, key=lambda e: e.seq)
    totals = [0, 0, 0]
    for at in range(0, len(ordered), 100):  # under 2 * APPLY_CHUNK: one script a page
        part = small.apply_page(ordered[at:at + 100], cursor_before=small.state().seq, fence=fences[1])
        totals = [totals[0] + part.applied, totals[1] + part.unchanged, totals[2] + part.duplicates]

    assert (result.applied, result.unchanged, result.duplicates) == tuple(totals)
    assert result.unchanged > 0 and result.applied > 900
    assert result.cursor == ordered[-1].seq
    assert sorted(result.changed) == sorted({e.permit.pn for e in page if e.permit.v > 1 or e.type == "issue"})
    a, b = _index(redis_sync, "pa"), _index(redis_sync, "pb")
    assert a == b
    assert a["count"] == PERMITS + 100 and a["seq"] == ordered[-1].seq
    # the last version of each permit won, its new ssn and card found it
    assert a["records"][pn_of(1)].n == "NAME 1 R2"
    assert a["by_ssn"]["X00007R2"] == pn_of(7) and "X00007R0" not in a["by_ssn"]
    assert a["by_cn"]["D000011R2"] == pn_of(11)
    assert len(a["stream"]) == result.applied

    # the same page again: every event a duplicate, nothing written
    again = chunked.apply_page(page, cursor_before=10, fence=fences[0])
    assert (again.applied, again.duplicates, again.changed) == (0, len(page), [])
    assert _index(redis_sync, "pa") == a


def test_a_chunk_refused_part_way_leaves_a_prefix_with_its_cursor(
        redis_sync: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = IndexWriter(redis_sync, "pc")
    fence = writer.acquire_leadership("old", ttl_s=60)
    _load(writer, fence)
    page = _page(10)
    planned = []
    plan_page = writer_module.plan_page

    def plan_and_lose_the_lock(*args: Any, **kwargs: Any) -> Any:
        planned.append(1)
        if len(planned) == 3:  # while Redis runs chunk 2, another leader takes over
            redis_sync.delete(writer.keys.leader)
            assert IndexWriter(redis_sync, "pc").acquire_leadership("new", ttl_s=60) is not None
        return plan_page(*args, **kwargs)

    monkeypatch.setattr(writer_module, "plan_page", plan_and_lose_the_lock)
    with pytest.raises(StaleFence):
        writer.apply_page(page, cursor_before=10, fence=fence)
    state = writer.state()
    ordered = sorted(page, key=lambda e: e.seq)
    bounds = writer_module.chunk_bounds(len(page))
    # chunks 1 and 2 were sent before the lock moved; chunk 3's script refused the old fence
    assert state.seq == ordered[bounds[1][1] - 1].seq
    reader = SyncPermitIndex(redis_sync, "pc")
    for i in range(PERMITS):
        applied = [e for e in ordered if e.seq <= state.seq and e.permit.pn == pn_of(i) and e.permit.v > 1]
        assert reader.get(pn_of(i)).v == (applied[-1].permit.v if applied else 1)


def test_a_flushed_script_cache_is_loaded_again_and_counts_stay_right(redis_sync: Any) -> None:
    writer = IndexWriter(redis_sync, "pd")
    fence = writer.acquire_leadership("t", ttl_s=60)
    _load(writer, fence)
    first = _page(10)
    writer.apply_page(first, cursor_before=10, fence=fence)  # loads APPLY once
    redis_sync.script_flush()  # as a restarted server would have it
    cursor = writer.state().seq
    second = [event(cursor + 1 + k, make_record(k % PERMITS, v=10 + k // PERMITS)) for k in range(600)]
    result = writer.apply_page(second, cursor_before=cursor, fence=fence)
    assert (result.applied, result.duplicates, result.cursor) == (600, 0, cursor + 600)
    assert SyncPermitIndex(redis_sync, "pd").get(pn_of(0)).v == 11
