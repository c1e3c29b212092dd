"""The compact stored layout's two twins (verifier/index/stored.py), no Redis needed.

The readable twin (``_stored_py``, msgspec) is the reference; the compiled twin
(``_stored_c``) must write the same bytes, read the same records, and refuse what it
refuses, with :class:`StoredRecordError` and nothing else. Both are imported directly,
so that both run whichever one ``stored`` picked; a compiled twin that did not build
fails here, it is never skipped.
"""

from __future__ import annotations

import datetime as dt
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpath
from benchmarks.index_support import synthetic_record
from verifier.index import stored
from verifier.index._stored_errors import StoredRecordError
from verifier.index.records import Card, PermitRecord, encode_record
from tests.support import twins as support_twins
from tests.support.twins import TWINS

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def load_twin(name: str) -> ModuleType:
    return support_twins.load_twin(f"verifier.index._stored_{name}")


PY = load_twin("py")
C = load_twin("c")


@pytest.fixture(params=TWINS, ids=TWINS)
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request.param)


def test_c_twin_loaded() -> None:
    if fastpath.NO_EXTENSIONS:
        assert stored.IMPLEMENTATION == "py"
        return
    assert stored.IMPLEMENTATION == "c", "the compiled codec did not load: build it (pip install -e .)"
    assert stored.decode_stored is C.decode_stored and stored.encode_stored is C.encode_stored


def outcome(module: ModuleType, pn: str, raw: bytes) -> Any:
    """The record decoded, or StoredRecordError (any other exception fails the test)."""
    try:
        return module.decode_stored(pn, raw)
    except StoredRecordError:
        return StoredRecordError


def both_decode(pn: str, raw: bytes) -> Any:
    """The reference's answer, after checking that the compiled twin agrees."""
    answers = [outcome(C, pn, raw), outcome(PY, pn, raw)]
    assert answers[0] == answers[1], (raw, answers)
    if answers[1] is not StoredRecordError:
        assert C.stored_version(raw) == PY.stored_version(raw) == answers[1].v
    else:
        for module in (C, PY):
            with pytest.raises(StoredRecordError):
                module.stored_version(raw)
    assert C.is_compact(raw) == PY.is_compact(raw)
    return answers[1]


def both_encode(record: PermitRecord) -> bytes:
    data = PY.encode_stored(record)
    assert C.encode_stored(record) == data
    return data


# --- the synthetic population ---------------------------------------------------------------

RECORDS = [synthetic_record(i) for i in range(10_000)]


def test_synthetic_records_round_trip_in_both_twins() -> None:
    for record in RECORDS[:3000]:
        data = both_encode(record)
        assert PY.is_compact(data) and C.is_compact(data)
        assert PY.decode_stored(record.pn, data) == record
        assert C.decode_stored(record.pn, data) == record
        assert C.stored_version(data) == PY.stored_version(data) == record.v


def test_legacy_values_decode_to_the_same_record(twin: ModuleType) -> None:
    for record in RECORDS[:3000]:
        legacy = encode_record(record)
        assert not twin.is_compact(legacy)
        assert twin.decode_stored("ignored: a legacy value has its own", legacy) == record
        assert twin.stored_version(legacy) == record.v


def test_the_compact_layout_is_smaller() -> None:
    compact = sum(len(C.encode_stored(r)) for r in RECORDS) / len(RECORDS)
    legacy = sum(len(encode_record(r)) for r in RECORDS) / len(RECORDS)
    assert compact <= 100, compact
    assert compact < 0.7 * legacy, (compact, legacy)


def test_the_layout_element_by_element() -> None:
    record = PermitRecord(pn="WP1", n="SMITH", nat="GBR", dob="1970-01-02", cat="C", emp="E", vf="1969-12-31",
                          vt="1985-2-3", v=7, status="cancelled", ssn=None,
                          cards=(Card("C1", "lost"), Card("C2", "active")), si=0, ci=None)
    data = both_encode(record)
    assert msgspec.msgpack.decode(data) == [7, "SMITH", "GBR", 1, 2, "E", -1, "1985-2-3", 1, None,
                                            [["C1", 1], ["C2", 0]], 0, None]
    assert data[:2] == b"\x9d\x07"  # v at a fixed offset, an integer header: the compact layout
    assert encode_record(record)[1] & 0xE0 == 0xA0  # a legacy value's second byte: the pn's str header


# --- any record ------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
ODD_DATES = ["1985-2-3", "1985-02-30", "", "0000-01-01", "2000-02-29", "1900-02-29", "1900-02-28",
             "2024-02-29", "2023-02-29", "9999-12-31", "0001-01-01", "1970-01-01", "1969-12-31",
             "10000-01-01", "1985-13-01", "1985-00-10", "1985-01-00", "1985-01-32", "1985/01/01",
             "١٩٨٥-٠١-٠١", "1985-01-01 ", " 1985-01-01", "+985-01-01", "1985-1-01", "19850101"]
DATES = (st.sampled_from(ODD_DATES) | st.dates().map(dt.date.isoformat) | TEXT)
UNSIGNED = st.integers(min_value=0, max_value=2**64 - 1)
INDEX = st.none() | st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**63 - 1]) | UNSIGNED


@st.composite
def records(draw: st.DrawFn) -> PermitRecord:
    cards = draw(st.lists(st.builds(Card, cn=TEXT, status=st.sampled_from(["active", "lost", "replaced"])),
                          max_size=3))
    return PermitRecord(
        pn=draw(TEXT), n=draw(TEXT), nat=draw(TEXT), dob=draw(DATES), cat=draw(st.sampled_from("ABC")),
        emp=draw(TEXT), vf=draw(DATES), vt=draw(DATES), v=draw(UNSIGNED),
        status=draw(st.sampled_from(["active", "cancelled"])), ssn=draw(st.none() | TEXT), cards=tuple(cards),
        si=draw(INDEX), ci=draw(INDEX),
    )


@SETTINGS
@given(record=records())
def test_any_record_round_trips_alike(record: PermitRecord) -> None:
    data = both_encode(record)
    assert both_decode(record.pn, data) == record
    assert both_decode("ignored", encode_record(record)) == record


@pytest.mark.parametrize("text", ODD_DATES)
def test_a_date_is_a_day_number_only_when_it_formats_back(text: str) -> None:
    record = msgspec.structs.replace(RECORDS[0], dob=text)
    stored_dob = msgspec.msgpack.decode(both_encode(record))[3]
    try:
        canonical = dt.date.fromisoformat(text).isoformat() == text and len(text) == 10
    except ValueError:
        canonical = False
    assert isinstance(stored_dob, int) == canonical, (text, stored_dob)
    assert both_decode(record.pn, both_encode(record)) == record


def test_the_compiled_date_arithmetic_over_the_calendar() -> None:
    epoch = dt.date(1970, 1, 1).toordinal()
    days = [*range(PY.MIN_DAY, PY.MIN_DAY + 800), *range(PY.MIN_DAY, PY.MAX_DAY, 97),
            *range(-800, 800), *range(PY.MAX_DAY - 800, PY.MAX_DAY + 1)]
    for day in days:
        text = dt.date.fromordinal(day + epoch).isoformat()
        assert C._date_of_py(day) == PY.date_of(day) == text
        assert C._day_of_py(text) == PY.day_of(text) == day


# --- damaged values: refused by both, with StoredRecordError, or read alike --------------------


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_random_bytes(raw: bytes) -> None:
    both_decode("WP1", raw)
    both_decode("WP1", b"\x9d" + raw)


@SETTINGS
@given(record=records(), cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=8),
       flips=st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(1, 255)), max_size=3))
def test_a_damaged_value_is_refused_by_both_or_read_alike(
    record: PermitRecord, cut: int, junk: bytes, flips: list[tuple[int, int]]
) -> None:
    for data in (bytearray(both_encode(record)), bytearray(encode_record(record))):
        for at, mask in flips:
            if data:
                data[at % len(data)] ^= mask
        both_decode("WP1", bytes(data[: cut % (len(data) + 1)]) + junk)


def test_every_truncation_and_every_single_byte_change_of_a_value() -> None:
    for record in (RECORDS[7], msgspec.structs.replace(RECORDS[14], n="MÜLLER, 李", vt="2027-2-3")):
        for data in (both_encode(record), encode_record(record)):
            for cut in range(len(data)):
                assert both_decode(record.pn, data[:cut]) is StoredRecordError
            assert both_decode(record.pn, data + b"\xc0") is StoredRecordError
            for at in range(len(data)):
                for value in (0x00, 0x03, 0x7F, 0x80, 0x9C, 0x9E, 0xA0, 0xC0, 0xC2, 0xCC, 0xD0, 0xD9, 0xDC,
                              0xE0, 0xFF, data[at] ^ 0x01, data[at] ^ 0x20):
                    both_decode(record.pn, data[:at] + bytes([value]) + data[at + 1:])


def _fixstr(text: bytes) -> bytes:
    return bytes([0xA0 | len(text)]) + text


def _compact(*elements: bytes, count: int | None = None) -> bytes:
    n = len(elements) if count is None else count
    return bytes([0x90 | n]) + b"".join(elements)


# v n nat dob cat emp vf vt status ssn cards si ci
GOOD = [b"\x01", _fixstr(b"SMITH"), _fixstr(b"GBR"), b"\xd1\x3b\x6e", b"\x01", _fixstr(b"E18"), b"\xcd\x50\x00",
        _fixstr(b"2027-2-3"), b"\x00", _fixstr(b"S1"), b"\x91\x92" + _fixstr(b"C1") + b"\x00", b"\x05", b"\xc0"]


def _with(at: int, element: bytes) -> bytes:
    return _compact(*GOOD[:at], element, *GOOD[at + 1:])


@pytest.mark.parametrize("data", [
    _compact(*GOOD),
    b"\xdc\x00\x0d" + b"".join(GOOD),                                # array 16 header
    b"\xdd\x00\x00\x00\x0d" + b"".join(GOOD),                        # array 32 header
    _with(0, b"\xcc\x01"), _with(0, b"\xcd\x00\x01"), _with(0, b"\xce\x00\x00\x00\x01"),  # wider uints
    _with(0, b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),               # v: the largest uint 64
    _with(0, b"\xd0\x01"), _with(0, b"\xd3" + bytes(8)),             # signed forms, >= 0
    _with(1, b"\xd9\x05SMITH"), _with(1, b"\xda\x00\x05SMITH"),      # str 8, str 16 for a short string
    _with(1, b"\xdb\x00\x00\x00\x05SMITH"),                          # str 32
    _with(1, _fixstr("é\x00\U0001F600".encode())),                   # non-ASCII, a NUL
    _with(3, b"\xd2\xff\xf5\x06\xc6"),                               # 0001-01-01
    _with(3, b"\xce\x00\x2c\xc0\xa0"),                               # 9999-12-31
    _with(3, b"\xff"), _with(3, b"\x00"),                            # 1969-12-31, 1970-01-01
    _with(3, b"\xd3\xff\xff\xff\xff\xff\xff\xff\xff"),               # -1 as int 64
    _with(3, _fixstr(b"1970-01-01")),                                # a canonical date as a str: read as it is
    _with(4, b"\x02"), _with(8, b"\x01"),                            # category C, cancelled
    _with(9, b"\xc0"), _with(10, b"\x90"), _with(10, b"\xdc\x00\x00"),  # no ssn, no card
    _with(10, b"\x92\x92" + _fixstr(b"C1") + b"\x02\x92" + _fixstr(b"C2") + b"\x01"),
    _with(11, b"\xc0"), _with(12, b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
])
def test_every_form_of_an_element_is_read_alike(data: bytes) -> None:
    record = both_decode("WP1", data)
    assert record is not StoredRecordError
    assert record.pn == "WP1" and record.vt == "2027-2-3"


@pytest.mark.parametrize("data", [
    b"", b"\x9d", b"\xc1", b"\x80", b"\x01",                         # nothing, a reserved byte, a map, an int
    _compact(*GOOD[:12]),                                            # 12 elements
    _compact(*GOOD, b"\xc0"),                                        # 14 elements
    _compact(*GOOD, count=14),                                       # 14 announced, 13 there
    b"\xdd\xff\xff\xff\xff" + b"".join(GOOD),                        # an array longer than the value
    _compact(*GOOD) + b"\x00",                                       # trailing bytes
    _compact(*GOOD)[:-1],                                            # truncated
    _with(0, b"\xff"), _with(0, b"\xd0\xff"), _with(0, b"\xd3\x80" + bytes(7)),  # v below 0
    _with(1, b"\xc0"), _with(1, b"\x01"), _with(1, b"\xc4\x01A"),    # n nil, an int, bin
    _with(1, _fixstr(b"\xed\xa0\x80")), _with(1, _fixstr(b"\xc0\x80")),  # a surrogate, an overlong NUL
    _with(1, _fixstr(b"\xf4\x90\x80\x80")), _with(1, _fixstr(b"\xe2\x82")), _with(1, _fixstr(b"\x80")),
    _with(1, b"\xdb\xff\xff\xff\xff"),                               # a string longer than the value
    _with(3, b"\xd2\xff\xf5\x06\xc5"),                               # the day before 0001-01-01
    _with(3, b"\xce\x00\x2c\xc0\xa1"),                               # the day after 9999-12-31
    _with(3, b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), _with(3, b"\xd3\x80" + bytes(7)),
    _with(3, b"\xc0"), _with(3, b"\xcb" + bytes(8)), _with(3, b"\xc3"),  # a date nil, a float, a bool
    _with(4, b"\x03"), _with(4, b"\xff"), _with(4, _fixstr(b"A")),   # category 3, -1, a str
    _with(8, b"\x02"), _with(8, _fixstr(b"active")),                 # status 2, a str
    _with(9, b"\x01"),                                               # ssn an int
    _with(10, b"\xc0"), _with(10, b"\x91\x92" + _fixstr(b"C1") + b"\x03"),  # cards nil, card status 3
    _with(10, b"\x91\x91" + _fixstr(b"C1")),                         # a card of one element
    _with(10, b"\x91\x93" + _fixstr(b"C1") + b"\x00\x00"),           # a card of three
    _with(10, b"\x91\x92" + _fixstr(b"C1") + _fixstr(b"active")),    # a card status as a str
    _with(10, b"\xdd\xff\xff\xff\xff"),                              # more cards than bytes
    _with(11, b"\xff"), _with(12, b"\xd1\xff\x00"),                  # si, ci below 0
    _with(11, b"\xca\x3f\x80\x00\x00"), _with(12, b"\xc2"),          # si a float, ci a bool
])
def test_what_the_reference_refuses_both_refuse(data: bytes) -> None:
    assert both_decode("WP1", data) is StoredRecordError


def test_a_value_that_is_not_bytes_or_a_pn_that_is_not_a_str(twin: ModuleType) -> None:
    with pytest.raises(TypeError):
        twin.decode_stored("WP1", bytearray(_compact(*GOOD)))
    with pytest.raises(TypeError):
        twin.decode_stored(None, _compact(*GOOD))
    with pytest.raises(TypeError):
        twin.is_compact("not bytes")
    with pytest.raises(TypeError):
        twin.encode_stored("not a record")


@pytest.mark.parametrize("changes", [
    {"v": -1}, {"v": 2**64}, {"v": True}, {"v": 1.0}, {"cat": "D"}, {"cat": None}, {"status": "revoked"},
    {"n": None}, {"nat": 3}, {"emp": b"E"}, {"dob": None}, {"vt": 20270101}, {"ssn": 5},
    {"n": "\ud800"}, {"cards": (Card("C1", "stolen"),)}, {"cards": (("C1", "active"),)},
    {"cards": (Card(None, "active"),)}, {"cards": None}, {"si": -1}, {"ci": 2**64}, {"si": "1"},
])
def test_a_record_the_layout_cannot_hold_is_refused_by_both(changes: dict[str, Any]) -> None:
    record = msgspec.structs.replace(RECORDS[0], **changes)
    for module in (C, PY):
        with pytest.raises(StoredRecordError):
            module.encode_stored(record)


def test_long_strings_and_many_cards_use_the_wider_headers() -> None:
    record = msgspec.structs.replace(RECORDS[0], n="N" * 300, emp="E" * 70_000, ssn="S" * 32,
                                     cards=tuple(Card(f"C{i}", "replaced") for i in range(16)))
    data = both_encode(record)
    assert b"\xda\x01\x2c" in data and b"\xdb\x00\x01\x11\x70" in data and b"\xd9\x20" in data
    assert b"\xdc\x00\x10" in data
    assert both_decode(record.pn, data) == record
    many = msgspec.structs.replace(record, cards=tuple(Card("C", "active") for _ in range(70_000)))
    assert both_decode(record.pn, both_encode(many)) == many


def test_cards_as_a_list_are_written_as_a_tuple_would_be() -> None:
    record = RECORDS[7]
    as_list = msgspec.structs.replace(record, cards=list(record.cards))
    assert both_encode(as_list) == both_encode(record)


def test_an_object_that_only_claims_to_be_a_record_or_a_card_is_refused() -> None:
    # the compiled encoder reads the fields at their slots: the type decides, not __class__
    def impostor(of: type) -> Any:
        class Impostor:
            @property  # type: ignore[misc]
            def __class__(self) -> type:
                return of

        return Impostor()

    assert isinstance(impostor(Card), Card) and isinstance(impostor(PermitRecord), PermitRecord)
    record = msgspec.structs.replace(RECORDS[0], cards=(impostor(Card),))
    for module in (C, PY):
        with pytest.raises(StoredRecordError):
            module.encode_stored(record)
        with pytest.raises(TypeError):
            module.encode_stored(impostor(PermitRecord))
