"""Look-ups by permit number, ssn and card number, through card and ssn changes."""

from __future__ import annotations

from typing import Any

import pytest

from verifier.index import PermitIndex, SyncPermitIndex, choose_record
from verifier.index.records import Card
from verifier.lib.redis_client import async_client

from .conftest import Leader, event, make_record, pn_of, run

pytestmark = pytest.mark.integration


def test_lost_and_replaced_cards_stay_resolvable(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(1)], seq=1)
    lost = make_record(1, v=2, cards=(Card("C000000001", "lost"),))
    leader.apply([event(2, lost, "card_lost")])
    found = reader.get_many("cn", ["C000000001"])["C000000001"]
    assert found.pn == pn_of(1) and found.card_status("C000000001") == "lost"
    replaced = make_record(1, v=3, cards=(Card("C000000001", "lost"), Card("C-NEW", "active")))
    leader.apply([event(3, replaced, "card_issued")])
    again = make_record(1, v=4, cards=(Card("C000000001", "lost"), Card("C-NEW", "replaced"),
                                       Card("C-NEWER", "active")))
    leader.apply([event(4, again, "card_replaced")])
    found = reader.get_many("cn", ["C000000001", "C-NEW", "C-NEWER"])
    assert {cn: r.card_status(cn) for cn, r in found.items()} == {
        "C000000001": "lost", "C-NEW": "replaced", "C-NEWER": "active"}
    assert {r.pn for r in found.values()} == {pn_of(1)}
    assert reader.get(pn_of(1)).cn == "C-NEWER"


def test_changed_ssn_drops_the_old_mapping(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(1), make_record(2)], seq=1)
    leader.apply([event(2, make_record(1, v=2, ssn="S-CHANGED"))])
    assert reader.get_many("ssn", [make_record(1).ssn or ""]) == {}
    assert reader.get_many("ssn", ["S-CHANGED"])["S-CHANGED"].pn == pn_of(1)
    leader.apply([event(3, make_record(1, v=3, ssn=None))])  # ssn withdrawn
    assert reader.get_many("ssn", ["S-CHANGED"]) == {}
    assert reader.get_many("ssn", [make_record(2).ssn or ""])[make_record(2).ssn or ""].pn == pn_of(2)


def test_dropped_card_stops_resolving(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(1)], seq=1)
    leader.apply([event(2, make_record(1, v=2, cards=()))])
    assert reader.get_many("cn", [make_record(1).cn or ""]) == {}


def test_ssn_moving_between_permits_in_one_page(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(1, ssn="S-X"), make_record(2, ssn=None)], seq=1)
    # A correction: the ssn belonged to permit 2. Both halves in one page, either order.
    leader.apply([event(2, make_record(2, v=2, ssn="S-X")), event(3, make_record(1, v=2, ssn=None))])
    assert reader.get_many("ssn", ["S-X"])["S-X"].pn == pn_of(2)


def test_shared_ssn_prefers_the_active_permit(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(1, ssn="S-P")], seq=1)
    leader.apply([event(2, make_record(2, ssn="S-P"), "issue"),
                  event(3, make_record(1, v=2, ssn="S-P", status="cancelled"), "cancel")])
    assert reader.get_many("ssn", ["S-P"])["S-P"].pn == pn_of(2)
    leader.apply([event(4, make_record(2, v=2, ssn="S-P", status="cancelled"), "cancel")])
    assert reader.get_many("ssn", ["S-P"])["S-P"].pn == pn_of(2)  # both cancelled: the later one
    leader.apply([event(5, make_record(2, v=3, ssn="S-Q", status="cancelled"))])
    assert reader.get_many("ssn", ["S-P"])["S-P"].pn == pn_of(1)


def test_choose_record_ignores_records_without_the_id() -> None:
    a, b = make_record(1, ssn="S"), make_record(2, ssn="T")
    assert choose_record("ssn", "S", [b, a]) == a
    assert choose_record("ssn", "U", [a, b]) is None
    assert choose_record("cn", a.cn or "", [b]) is None


def test_get_many_edges(leader: Leader, reader: SyncPermitIndex) -> None:
    leader.load([make_record(i) for i in range(5)], seq=1)
    assert reader.get_many("pn", []) == {}
    assert reader.get_many("ssn", []) == {}
    got = reader.get_many("pn", [pn_of(1), pn_of(1), "nope", ""])
    assert list(got) == [pn_of(1)]
    assert reader.get_many("cn", ["", "nope", make_record(2).cn or ""]).keys() == {make_record(2).cn}
    with pytest.raises(ValueError):
        reader.get_many("name", ["x"])  # type: ignore[arg-type]


def test_ten_thousand_ids_in_one_call(leader: Leader, reader: SyncPermitIndex, redis_url: str) -> None:
    records = [make_record(i) for i in range(12_000)]
    leader.load(records, seq=1)
    wanted = [pn_of(i) for i in range(0, 20_000, 2)]  # 10,000 ids, 6,000 of them present
    expected = {r.pn: r for r in records[::2]}
    assert reader.get_many("pn", wanted) == expected
    ssns = [make_record(i).ssn or "" for i in range(0, 20_000, 2)]
    assert len(reader.get_many("ssn", ssns)) == 6_000

    async def async_read() -> tuple[int, int, int]:
        client = async_client(redis_url)
        try:
            index = PermitIndex(client)
            by_pn = await index.get_many("pn", wanted)
            by_ssn = await index.get_many("ssn", ssns)
            by_cn = await index.get_many("cn", [make_record(i).cn or "" for i in range(0, 20_000, 2)])
            assert by_pn == expected
            return len(by_pn), len(by_ssn), len(by_cn)
        finally:
            await client.aclose()

    assert run(async_read()) == (6_000, 6_000, 6_000)


def test_async_and_sync_readers_agree(leader: Leader, reader: SyncPermitIndex, redis_url: str) -> None:
    leader.load([make_record(i) for i in range(20)], seq=1)
    leader.apply([event(2, make_record(3, v=2, status="cancelled"))])
    leader.writer.heartbeat(2, 1_800_000_000.0, leader.fence)

    async def async_read() -> Any:
        client = async_client(redis_url)
        try:
            index = PermitIndex(client)
            return (await index.get(pn_of(3)), await index.get(pn_of(99)),
                    await index.get_many("cn", [make_record(4).cn or ""]), await index.freshness())
        finally:
            await client.aclose()

    record, missing, by_cn, fresh = run(async_read())
    assert record == reader.get(pn_of(3)) and record.status == "cancelled"
    assert missing is None
    assert by_cn == reader.get_many("cn", [make_record(4).cn or ""])
    sync_fresh = reader.freshness()
    assert (fresh.ready, fresh.generation, fresh.seq, fresh.as_of, fresh.count) == (
        sync_fresh.ready, sync_fresh.generation, 2, sync_fresh.as_of, 20)


def test_secondary_lookup_after_a_switch_with_a_cached_pointer(leader: Leader, redis_sync: Any,
                                                             redis_url: str) -> None:
    leader.load([make_record(i) for i in range(10)], seq=1)
    reader = SyncPermitIndex(redis_sync)
    assert reader.get_many("ssn", [make_record(1).ssn or ""])  # caches the pointer
    leader.load([make_record(i, v=2, n="AFTER") for i in range(10)], seq=2)  # old one dropped

    async def async_read(index: PermitIndex) -> Any:
        return await index.get_many("cn", [make_record(2).cn or ""])

    async def scenario() -> Any:
        client = async_client(redis_url)
        try:
            index = PermitIndex(client)
            await index.get(pn_of(1))
            leader.load([make_record(i, v=3, n="AGAIN") for i in range(10)], seq=3)
            return await async_read(index)
        finally:
            await client.aclose()

    assert reader.get_many("ssn", [make_record(1).ssn or ""])[make_record(1).ssn or ""].n == "AFTER"
    assert run(scenario())[make_record(2).cn or ""].n == "AGAIN"


def test_a_stale_mapping_is_ignored(leader: Leader, reader: SyncPermitIndex, redis_sync: Any) -> None:
    leader.load([make_record(1)], seq=1)
    state = leader.writer.state()
    assert state.generation is not None and state.buckets is not None
    # Corrupt the look-up: "S-GHOST" -> permit 1, whose record does not carry it.
    from verifier.index.keys import KeyLayout, bucket_of, lookup_field

    keys = KeyLayout()
    bucket = keys.ssn_prefix(state.generation) + b"%d" % bucket_of(b"S-GHOST", state.buckets)
    field = lookup_field(b"S-GHOST")
    redis_sync.hset(bucket, field, pn_of(1))
    assert reader.get_many("ssn", ["S-GHOST"]) == {}
    redis_sync.hset(bucket, field, f"{pn_of(1)} {pn_of(9)}")
    assert reader.get_many("ssn", ["S-GHOST"]) == {}


def test_a_corrupt_record_is_an_outage_not_a_crash(leader: Leader, reader: SyncPermitIndex,
                                                   redis_sync: Any) -> None:
    leader.load([make_record(1), make_record(2)], seq=1)
    from verifier.index import IndexUnavailable
    from verifier.index.keys import KeyLayout

    generation = leader.writer.state().generation or 0
    redis_sync.set(KeyLayout().record_prefix(generation) + pn_of(1).encode(), b"\xc1garbage")
    with pytest.raises(IndexUnavailable):
        reader.get(pn_of(1))
    with pytest.raises(IndexUnavailable):
        reader.get_many("ssn", [make_record(1).ssn or ""])
    assert reader.get(pn_of(2)) == make_record(2)


# Two card numbers of one crc32 (found by a birthday search): they share a field in their bucket.
CRC_TWINS = ("Ca02552f76dbdf5fd", "C670009b22c087272")


def test_ids_of_one_crc32_share_a_field_and_each_finds_its_own_permit(leader: Leader,
                                                                      reader: SyncPermitIndex) -> None:
    import zlib

    from verifier.index import Card

    assert zlib.crc32(CRC_TWINS[0].encode()) == zlib.crc32(CRC_TWINS[1].encode())
    leader.load([make_record(1, cards=(Card(CRC_TWINS[0], "active"),)),
                 make_record(2, ssn=CRC_TWINS[1], cards=(Card(CRC_TWINS[1], "active"),))], seq=1)
    found = reader.get_many("cn", list(CRC_TWINS))
    assert {k: v.pn for k, v in found.items()} == {CRC_TWINS[0]: pn_of(1), CRC_TWINS[1]: pn_of(2)}
    assert {k: v.pn for k, v in reader.get_many("ssn", [CRC_TWINS[1], CRC_TWINS[0]]).items()} == {
        CRC_TWINS[1]: pn_of(2)}
    # Applied changes keep them apart: the second card moves to a third permit, the first stays.
    leader.apply([event(2, make_record(2, v=2, ssn=CRC_TWINS[1], cards=())),
                  event(3, make_record(3, cards=(Card(CRC_TWINS[1], "active"),)))])
    found = reader.get_many("cn", list(CRC_TWINS))
    assert {k: v.pn for k, v in found.items()} == {CRC_TWINS[0]: pn_of(1), CRC_TWINS[1]: pn_of(3)}
    leader.apply([event(4, make_record(1, v=2, cards=()))])
    assert {k: v.pn for k, v in reader.get_many("cn", list(CRC_TWINS)).items()} == {CRC_TWINS[1]: pn_of(3)}


def test_a_generation_of_the_older_layout_is_read_and_written_by_its_ids(leader: Leader, reader: SyncPermitIndex,
                                                                        redis_sync: Any) -> None:
    """A generation loaded before bucket fields were crc32s (its pointer has no ``:h``)
    keeps working until a full load replaces it: look-ups and applied changes use its ids."""
    from verifier.index.keys import KeyLayout, Pointer, bucket_of

    load = leader.writer.begin_snapshot(leader.fence)
    load.pointer = Pointer(load.generation, load.pointer.buckets, hashed=False)  # as the older code wrote it
    load.add([make_record(1), make_record(2)])
    load.commit(1, "feed-old")
    raw = redis_sync.get(KeyLayout().current)
    assert raw == b"%d:%d" % (load.generation, load.pointer.buckets)
    assert reader.get_many("ssn", [make_record(1).ssn])[make_record(1).ssn].pn == pn_of(1)
    leader.apply([event(2, make_record(1, v=2, ssn="S-MOVED"))])
    assert set(reader.get_many("ssn", ["S-MOVED", make_record(1).ssn or ""])) == {"S-MOVED"}
    bucket = KeyLayout().ssn_prefix(load.generation) + b"%d" % bucket_of(b"S-MOVED", load.pointer.buckets)
    assert redis_sync.hget(bucket, "S-MOVED") == pn_of(1).encode()
    assert {k: v.pn for k, v in reader.get_many("cn", [make_record(2).cn or ""]).items()} == {
        make_record(2).cn: pn_of(2)}


def test_new_generations_store_compact_records_and_an_older_one_keeps_its_layout(
        leader: Leader, reader: SyncPermitIndex, redis_sync: Any) -> None:
    """A full load writes the compact stored layout (pointer ``:hc``: no permit number in
    the value, dates as day numbers); a generation loaded before it (``:h``) keeps
    msgspec's layout for the changes applied to it, so that a reader of the older code
    reads it to the end, and readers of this code read both."""
    from verifier.index.keys import KeyLayout, Pointer
    from verifier.index.records import encode_record
    from verifier.index.stored import is_compact

    keys = KeyLayout()
    load = leader.writer.begin_snapshot(leader.fence)
    load.pointer = Pointer(load.generation, load.pointer.buckets)  # as the code before compact records wrote it
    load.add([make_record(1), make_record(2)])
    load.commit(1, "feed-old")
    assert redis_sync.get(keys.current) == b"%d:%d:h" % (load.generation, load.pointer.buckets)
    leader.apply([event(2, make_record(1, v=2, n="CHANGED"))])
    stored = redis_sync.get(keys.record_prefix(load.generation) + pn_of(1).encode())
    assert stored == encode_record(make_record(1, v=2, n="CHANGED")) and not is_compact(stored)
    assert reader.get(pn_of(1)) == make_record(1, v=2, n="CHANGED")

    leader.load([make_record(1, v=3), make_record(2, v=3)], seq=5, feed_id="feed-new")
    pointer = Pointer.parse(redis_sync.get(keys.current))
    assert pointer is not None and pointer.compact and redis_sync.get(keys.current).endswith(b":hc")
    leader.apply([event(6, make_record(2, v=4, status="cancelled"), "cancel")])
    for i, v in ((1, 3), (2, 4)):
        value = redis_sync.get(keys.record_prefix(pointer.generation) + pn_of(i).encode())
        assert is_compact(value) and pn_of(i).encode() not in value
        assert len(value) < 0.75 * len(encode_record(make_record(i, v=v)))
    assert reader.get(pn_of(2)) == make_record(2, v=4, status="cancelled")
    assert reader.get_many("ssn", [make_record(1).ssn or ""])[make_record(1).ssn or ""] == make_record(1, v=3)
    assert reader.get_many("cn", [make_record(2).cn or ""])[make_record(2).cn or ""].status == "cancelled"
    # a value of the older layout in a compact generation (written by hand) is still read
    redis_sync.set(keys.record_prefix(pointer.generation) + pn_of(1).encode(), encode_record(make_record(1, v=9)))
    assert reader.get(pn_of(1)) == make_record(1, v=9)
    leader.apply([event(7, make_record(1, v=10))])  # the APPLY script reads v from either layout
    assert reader.get(pn_of(1)).v == 10


def test_the_pointer_names_the_stored_layout() -> None:
    from verifier.index.keys import Pointer

    assert Pointer.parse(b"7:1024:hc") == Pointer(7, 1024, hashed=True, compact=True)
    assert Pointer(7, 1024, compact=True).raw == b"7:1024:hc"
    assert Pointer.parse(b"7:1024:h") == Pointer(7, 1024) and Pointer(7, 1024).raw == b"7:1024:h"
    assert Pointer.parse(b"7:1024") == Pointer(7, 1024, hashed=False)
    with pytest.raises(ValueError):
        Pointer.parse(b"7:1024:c")
