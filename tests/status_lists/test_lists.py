"""Making the lists: the packing, the entries' rule, the signed token, each read back by the
independent reader (decoder.py) and by fastpath, never by the code that wrote them."""

from __future__ import annotations

import random
import zlib

import cbor2
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpath
from verifier.index.records import Card, ChangeEvent, PermitRecord
from verifier.index.status_lists import CARDS, PERMITS
from verifier.issuing.keys import IssuerKey, KeyRing
from verifier.status_lists import keys as signing_keys
from verifier.status_lists.bits import DENY, StatusArray, pack
from verifier.status_lists.entries import ListEntries
from verifier.status_lists.token import compress, etag_of, status_list_token
from verifier.upstream.simulator import Upstream

from .decoder import EXP, IAT, SUB, TTL, TYP, read_token
from .test_decoder import LONG_2, SHORT_1, SHORT_2

NOW = 1767225600
KEY = IssuerKey.from_seed(bytes(range(32)), ["https://pv.example/v1/status-lists"])


def trust_with(*keys: IssuerKey) -> fastpath.TrustList:
    return fastpath.TrustList.from_jwks(signing_keys.public_jwks(KeyRing(keys)))


# --- packing ------------------------------------------------------------------------------
@pytest.mark.parametrize(("bits", "case"), [(1, SHORT_1), (2, SHORT_2)], ids=["1-bit", "2-bits"])
def test_pack_makes_the_drafts_bytes(bits: int, case: tuple[str, list[int]]) -> None:
    entries = case[1]
    per_byte = 8 // bits
    padded = entries + [0] * (-len(entries) % per_byte)
    expected = {1: bytes.fromhex("b9a3"), 2: bytes.fromhex("c944f9")}[bits]
    assert pack(bytes(padded), bits) == expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 2]).flatmap(lambda bits: st.tuples(
    st.just(bits), st.lists(st.integers(0, (1 << bits) - 1), max_size=200))))
def test_every_entry_packs_where_the_draft_reads_it(case: tuple[int, list[int]]) -> None:
    bits, entries = case
    array = StatusArray(bits)
    for i, value in enumerate(entries):
        array.set(i, value)
    token = status_list_token(KEY, sub="s", bits=bits, bit_array=array.packed(), iat=NOW, exp=NOW + 60, ttl=30)
    read = read_token(token)
    assert read.entries(len(entries)) == entries
    assert all(v == (1 if bits == 1 else DENY) for v in read.entries()[len(entries):])  # padding: not valid


def test_a_long_list_packs_as_the_drafts_test_vector() -> None:
    _, set_entries = LONG_2
    values = bytearray(1 << 20)
    for i, v in set_entries.items():
        values[i] = v
    draft = read_token(cbor2.dumps([b"", {}, cbor2.dumps({65533: cbor2.loads(bytes.fromhex(LONG_2[0]))}),
                                    bytes(64)]))
    assert pack(values, 2) == draft.array


@pytest.mark.parametrize("bad", [
    (b"\x00" * 7, 1),   # not a whole byte of entries
    (b"\x00" * 4, 3),   # 3 bits: not the draft's
])
def test_pack_refuses(bad: tuple[bytes, int]) -> None:
    with pytest.raises(ValueError):
        pack(*bad)


def test_an_array_grows_with_entries_that_read_not_valid() -> None:
    array = StatusArray(2)
    assert array.set(5, 0) is True and array.values == bytearray([1, 1, 1, 1, 1, 0])
    assert array.set(5, 0) is False and array.set(5, 1) is True
    assert array.get(99) == DENY
    assert len(array.packed()) == 2  # 6 entries, padded to 8


# --- the token ----------------------------------------------------------------------------
def test_a_token_read_back_by_the_drafts_reader_and_by_fastpath() -> None:
    array = StatusArray(2)
    for i, value in enumerate([0, 1, 0, 2, 0, 0, 1]):
        array.set(i, value)
    token = status_list_token(KEY, sub="https://pv.example/v1/status-lists/permits", bits=2,
                              bit_array=array.packed(), iat=NOW, exp=NOW + 3600, ttl=300)
    read = read_token(token)
    assert read.protected == {1: -8, 4: KEY.kid, TYP: "application/statuslist+cwt"}
    assert (read.claims[SUB], read.claims[IAT], read.claims[EXP], read.claims[TTL]) == (
        "https://pv.example/v1/status-lists/permits", NOW, NOW + 3600, 300)
    assert read.bits == 2 and read.entries(7) == [0, 1, 0, 2, 0, 0, 1]
    assert read.signed_by(KEY.public_key)
    verified = fastpath.verify_status_list(token, trust_with(KEY), NOW)
    assert [verified.get(i) for i in range(7)] == [0, 1, 0, 2, 0, 0, 1]
    assert etag_of(token).startswith('"') and etag_of(token) != etag_of(token + b"x")


def test_the_compression_is_zlib_and_small_for_a_sparse_list() -> None:
    rng = random.Random(3)
    values = bytearray(1_000_000)
    for i in rng.sample(range(len(values)), 10_000):  # 1% cancelled
        values[i] = 1
    packed = pack(values, 2)
    compressed = compress(packed)
    assert zlib.decompress(compressed) == packed
    assert len(compressed) <= 20_000, len(compressed)  # WIRE-FORMAT 8's target


@pytest.mark.parametrize("bad", [dict(bits=4), dict(exp=NOW), dict(ttl=0)])
def test_a_token_that_would_be_refused_is_not_made(bad: dict[str, int]) -> None:
    arguments = dict(sub="s", bits=1, bit_array=b"\x00", iat=NOW, exp=NOW + 10, ttl=5) | bad
    with pytest.raises(ValueError):
        status_list_token(KEY, **arguments)  # type: ignore[arg-type]


# --- the entries' rule -------------------------------------------------------------------
BASE = PermitRecord(pn="WP1", n="N", nat="GBR", dob="1990-01-01", cat="B", emp="E" * 18, vf="2025-01-01",
                    vt="2030-01-01", v=1, si=3, ci=7, cards=(Card("C1", "active"),))


def test_the_rule() -> None:
    entries = ListEntries.build([BASE])
    assert entries.permits.values == bytearray([1, 1, 1, 0])   # unclaimed 0-2: not valid
    assert entries.cards.values == bytearray([1] * 7 + [0])
    lost = msgspec.structs.replace(BASE, cards=(Card("C1", "lost"),), v=2)
    assert entries.apply(lost) == {CARDS} and entries.cards.get(7) == 1
    replaced = msgspec.structs.replace(BASE, cards=(Card("C1", "lost"), Card("C2", "active")), ci=9, v=3)
    assert entries.apply(replaced) == {CARDS}
    assert (entries.cards.get(7), entries.cards.get(9)) == (1, 0)
    cancelled = msgspec.structs.replace(replaced, status="cancelled", v=4)
    assert entries.apply(cancelled) == {PERMITS, CARDS}
    assert (entries.permits.get(3), entries.cards.get(9)) == (1, 1)  # a cancelled permit's card: not valid
    assert entries.apply(cancelled) == set()


def test_a_card_replaced_leaves_its_old_entry_not_valid() -> None:
    entries = ListEntries.build([BASE])
    moved = msgspec.structs.replace(BASE, cards=(Card("C1", "replaced"), Card("C2", "active")), ci=8, v=2)
    entries.apply(moved)
    assert entries.cards.values == bytearray([1] * 8 + [0])
    assert entries.same_as(ListEntries.build([moved]))


def test_records_without_entries_add_none() -> None:
    bare = msgspec.structs.replace(BASE, si=None, ci=None)
    entries = ListEntries.build([bare])
    assert len(entries.permits) == 0 and len(entries.cards) == 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), events=st.integers(1, 400))
def test_kept_up_to_date_equals_built_afresh(seed: int, events: int) -> None:
    # the simulator's lifecycle events applied one by one, in feed order, give the lists that a
    # build from its records afterwards gives
    upstream = Upstream.create(permits=300, seed=seed)
    entries = ListEntries.build(upstream.records())
    upstream.random_events(events)
    page = upstream.feed_events(0, events)
    assert page is not None and len(page[5]) == events
    for raw in page[5]:
        entries.apply(msgspec.msgpack.decode(raw, type=ChangeEvent).permit)
    assert entries.same_as(ListEntries.build(upstream.records()))
