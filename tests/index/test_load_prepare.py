"""The snapshot load's per-record loop (``prepare_load``) and its look-up packer
(``pack_lookup_bucket``), both twins, no Redis needed.

The readable twin (``_stored_py``) is the reference: the compiled one must give the
same keys, values and buckets, pack the same RESP bytes, and raise the same
exception type, for any record (identifiers a sync must refuse included). The packed
command is also checked against redis-py's own packer.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.connection import PythonRespSerializer

from benchmarks.index_support import synthetic_record
from verifier.index import stored
from verifier.index.records import Card, PermitRecord, check_identifiers, encode_record
from verifier.index.writer import _joined_mapping
from tests.support import twins as support_twins

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PY = support_twins.load_twin("verifier.index._stored_py")
C = support_twins.load_twin("verifier.index._stored_c")
PREFIX = b"{pv}:g3:p:"


def run(module: ModuleType, records: list[PermitRecord], mask: int = 15, encode: Any = None) -> Any:
    """(keys, values, ssn buckets, cn buckets), or the type of what was raised."""
    ssn: dict[int, bytearray] = {}
    cn: dict[int, bytearray] = {}
    try:
        keys, values = module.prepare_load(records, PREFIX, mask, ssn, cn, encode)
    except Exception as exc:  # noqa: BLE001 - the type is the answer compared
        return type(exc)
    return keys, values, ssn, cn


def both(records: list[PermitRecord], **kw: Any) -> Any:
    answers = [run(C, records, **kw), run(PY, records, **kw)]
    assert answers[0] == answers[1], answers
    return answers[1]


def test_the_compiled_twin_is_the_one_used() -> None:
    if stored.IMPLEMENTATION == "c":
        assert stored.prepare_load is C.prepare_load and stored.pack_lookup_bucket is C.pack_lookup_bucket


def test_a_synthetic_batch_alike_and_as_the_index_stores_it() -> None:
    records = [synthetic_record(i) for i in range(3000)]
    keys, values, ssn, cn = both(records, mask=255)
    assert keys == [PREFIX + r.pn.encode() for r in records]
    assert values == [stored.encode_stored(r) for r in records]
    # every ssn and card number is in the bucket its crc32 picks, once, with its permit
    entries = {bucket: bytes(buf).split(b"\0")[:-1] for bucket, buf in ssn.items()}
    assert sum(len(e) // 2 for e in entries.values()) == sum(1 for r in records if r.ssn)
    for r in records[:200]:
        if r.ssn:
            parts = entries[zlib.crc32(r.ssn.encode()) & 255]
            assert (r.ssn.encode(), r.pn.encode()) in zip(parts[0::2], parts[1::2])
    assert sum(bytes(b).count(b"\0") // 2 for b in cn.values()) == sum(len(r.cards) for r in records)


def test_the_legacy_encoder_is_used_when_given() -> None:
    records = [synthetic_record(i) for i in range(50)]
    keys, values, _, _ = both(records, encode=encode_record)
    assert values == [encode_record(r) for r in records]


def test_buckets_already_there_are_appended_to() -> None:
    records = [synthetic_record(i) for i in range(100)]
    for module in (C, PY):
        ssn: dict[int, bytearray] = {}
        cn: dict[int, bytearray] = {}
        module.prepare_load(records[:50], PREFIX, 7, ssn, cn)
        module.prepare_load(records[50:], PREFIX, 7, ssn, cn)
        whole_ssn: dict[int, bytearray] = {}
        whole_cn: dict[int, bytearray] = {}
        module.prepare_load(records, PREFIX, 7, whole_ssn, whole_cn)
        assert (ssn, cn) == (whole_ssn, whole_cn)


BASE = synthetic_record(1)


@pytest.mark.parametrize("changes", [
    {"pn": ""}, {"pn": "WP 1"}, {"pn": "WP\t1"}, {"pn": "WP\x001"}, {"pn": "WP\u00a01"}, {"pn": "WP\u20281"},
    {"pn": "WP\x1c1"}, {"pn": "WP\x851"}, {"pn": "\u3000"}, {"ssn": ""}, {"ssn": "12\x003"},
    {"cards": (Card("", "active"),)}, {"cards": (Card("C\x00", "active"),)},
    {"pn": "WP\ud8001"}, {"n": "\udc00"}, {"pn": 7}, {"ssn": 5}, {"cards": None}, {"cat": "Z"}, {"v": -1},
])
def test_what_a_sync_must_refuse_is_refused_alike(changes: dict[str, Any]) -> None:
    record = BASE.__class__(**{**{f: getattr(BASE, f) for f in BASE.__struct_fields__}, **changes})
    answer = both([synthetic_record(2), record])
    assert isinstance(answer, type) and issubclass(answer, Exception), answer
    if isinstance(record.pn, str) and (not record.pn or any(c.isspace() or c == "\0" for c in record.pn)):
        assert answer is ValueError
        with pytest.raises(ValueError):
            check_identifiers(record)


def test_a_card_that_is_not_a_card_and_a_batch_of_non_records() -> None:
    class Duck:
        cn = "C1"
        status = "active"

    record = BASE.__class__(**{**{f: getattr(BASE, f) for f in BASE.__struct_fields__}, "cards": (Duck(),)})
    assert both([record]) is stored.StoredRecordError
    assert both(["not a record"]) is TypeError  # type: ignore[list-item]


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
ODD = st.sampled_from(["", " ", "\x00", "\u00a0", "a b", "\u2029", "\x1f", "x\x00y"])


@st.composite
def records(draw: st.DrawFn) -> PermitRecord:
    ident = TEXT | ODD
    cards = draw(st.lists(st.builds(Card, cn=ident, status=st.just("active")), max_size=3))
    return PermitRecord(pn=draw(ident), n=draw(TEXT), nat="GBR", dob="1980-01-01", cat="A", emp="E",
                        vf="2025-01-01", vt="2027-01-01", v=draw(st.integers(0, 10)), status="active",
                        ssn=draw(st.none() | ident), cards=tuple(cards), si=None, ci=None)


@SETTINGS
@given(batch=st.lists(records(), max_size=6), mask=st.sampled_from([0, 1, 3, 255, 2**32 - 1]))
def test_any_batch_alike(batch: list[PermitRecord], mask: int) -> None:
    both(batch, mask=mask)


def test_the_compiled_crc32_is_zlibs() -> None:
    for data in (b"", b"a", b"123456789", bytes(range(256)), "中文".encode() * 50):
        assert C._crc32_py(data) == zlib.crc32(data)


# --- pack_lookup_bucket ----------------------------------------------------------------------

def resp(*args: bytes) -> bytes:
    return b"".join(PythonRespSerializer(0, lambda value: value).pack(*args))


def entries_of(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(ident + b"\0" + pn + b"\0" for ident, pn in pairs)


@SETTINGS
@given(pairs=st.lists(st.tuples(st.binary(max_size=12).filter(lambda b: b"\0" not in b),
                                st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b)),
                      min_size=1, max_size=40),
       hashed=st.booleans())
def test_a_bucket_packs_alike_and_as_redis_py_packs_its_hset(pairs: list[tuple[bytes, bytes]],
                                                             hashed: bool) -> None:
    key = b"{pv}:g3:s:17"
    entries = entries_of(pairs)
    packed = C.pack_lookup_bucket(key, bytearray(entries), hashed)
    assert packed == PY.pack_lookup_bucket(key, entries, hashed) == C.pack_lookup_bucket(key, entries, hashed)
    mapping = _joined_mapping(bytearray(entries), hashed)
    if packed is None:  # a field twice: the caller joins the permit numbers
        assert len(mapping) < len(pairs)
    else:
        assert len(mapping) == len(pairs)
        assert packed == resp(b"HSET", key, *[part for item in mapping.items() for part in item])


@pytest.mark.parametrize("entries", [b"", b"a", b"a\0", b"a\0b", b"a\0b\0c\0", b"\0\0\0"[:1]])
def test_entries_that_are_not_pairs_are_refused_by_both(entries: bytes) -> None:
    for module in (C, PY):
        with pytest.raises(ValueError):
            module.pack_lookup_bucket(b"k", entries, False)


def test_an_id_on_two_permits_is_left_to_the_caller() -> None:
    entries = entries_of([(b"S1", b"WP1"), (b"S2", b"WP2"), (b"S1", b"WP3")])
    for module in (C, PY):
        assert module.pack_lookup_bucket(b"k", entries, False) is None
        assert module.pack_lookup_bucket(b"k", entries, True) is None
    assert _joined_mapping(bytearray(entries), False) == {b"S1": b"WP1 WP3", b"S2": b"WP2"}


