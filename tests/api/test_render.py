"""The look-up renderer's two twins (verifier/api/permits/render.py).

The Python twin (msgspec decode -> views -> msgspec encode) is the reference; the
compiled twin must give the same bytes for every record msgspec accepts, and
refuse (RecordError) every record msgspec refuses. Stored values in the compact
layout (verifier.index.stored: no pn, the id asked is it) must render as the legacy
value of the same record, and be refused by both where the stored codec refuses them.
Run against both twins (ids ``c`` and ``py``), with a test that fails when the
compiled twin did not load.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpath
from verifier.api.auth.roles import Role
from verifier.api.permits import render
from verifier.api.permits._render_errors import RecordError
from verifier.api.verdicts.views import view_spec
from verifier.index import _stored_c, _stored_py
from verifier.index.records import Card, PermitRecord, encode_record
from verifier.index.stored import encode_stored
from verifier.upstream.simulator import Upstream
from tests.support import twins as support_twins
from tests.support.twins import TWINS

FIELD_SETS = sorted({view_spec(role.value, full).fields for role in Role for full in (False, True)})
ALL_FIELDS = render.FIELD_ORDER
SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def load_twin(name: str) -> ModuleType:
    return support_twins.load_twin(f"verifier.api.permits._render_{name}")


@pytest.fixture(params=TWINS, ids=TWINS)
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request.param)


PY = load_twin("py")


def test_c_twin_loaded() -> None:
    # a broken build must not quietly test the Python twin twice
    if fastpath.NO_EXTENSIONS:
        assert render.IMPLEMENTATION == "py"
        return
    assert render.IMPLEMENTATION == "c", "the compiled renderer did not load: build it (pip install -e .)"
    assert render.render_found is load_twin("c").render_found


def test_field_order_is_permit_views_and_both_twins_share_it() -> None:
    # defined once (permits/schemas.py) from the response Struct, not written in each twin
    from verifier.api.permits.schemas import FIELD_ORDER
    from verifier.api.verdicts.schemas import PermitView

    assert FIELD_ORDER == PermitView.__struct_fields__
    assert load_twin("py").FIELD_ORDER is FIELD_ORDER
    assert load_twin("c").FIELD_ORDER is FIELD_ORDER


def test_compiled_table_is_checked_against_field_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # a PermitView whose fields changed order (here: n before pn) must stop the compiled renderer
    # from loading, or it would write one field's value under another's name
    c_twin = load_twin("c")
    c_twin._check_table()  # the real one matches
    reordered = ("n", "status", "cat", "emp", "vf", "vt", "pn", *ALL_FIELDS[7:])
    monkeypatch.setattr(c_twin, "FIELD_ORDER", reordered)
    with pytest.raises(ImportError, match="field table"):
        c_twin._check_table()


def both(ids: list[str], values: list[bytes | None], fields: tuple[str, ...] = ALL_FIELDS,
         employers: frozenset[str] | None = None) -> Any:
    """The reference's answer (or RecordError), after checking that the compiled twin agrees."""
    c_twin = load_twin("c")
    outcomes = []
    for module in (c_twin, PY):
        try:
            outcomes.append(module.render_found(ids, values, fields, employers))
        except RecordError:
            outcomes.append(RecordError)
    assert outcomes[0] == outcomes[1], (values, outcomes)
    return outcomes[1]


# --- the records of the simulator, every field set -------------------------------------


def _simulator() -> tuple[list[str], list[bytes | None], list[PermitRecord]]:
    twin = Upstream.create(permits=1200, seed=11)
    records = [twin.record_at(i) for i in range(twin.count)]
    return [r.pn for r in records], [encode_record(r) for r in records], records


IDS, VALUES, RECORDS = _simulator()


@pytest.mark.parametrize("fields", FIELD_SETS, ids=lambda f: str(len(f)))
def test_every_field_set_renders_as_msgspec_would(twin: ModuleType, fields: tuple[str, ...]) -> None:
    ids = [*IDS, "WP-UNKNOWN", IDS[3]]  # an unknown id and one asked twice
    values = [*VALUES, None, VALUES[3]]
    items, missing, shown = twin.render_found(ids, values, fields, None)
    spec = view_spec("admin")  # any spec: the expected views are built field by field below
    assert spec.fields == ALL_FIELDS
    expected_views = []
    for record in [*RECORDS, RECORDS[3]]:
        full = msgspec.to_builtins(view_spec("admin").of_record(record))
        expected_views.append({k: v for k, v in full.items() if k in fields})
    found = msgspec.json.decode(b"[" + items + b"]")
    assert [f["id"] for f in found] == [*IDS, IDS[3]]
    assert [f["permit"] for f in found] == expected_views
    assert missing == ["WP-UNKNOWN"]
    assert shown == [*IDS, IDS[3]]


def test_a_partners_employers_only(twin: ModuleType) -> None:
    employers = frozenset({RECORDS[0].emp, RECORDS[1].emp})
    items, missing, shown = twin.render_found(IDS, VALUES, FIELD_SETS[0], employers)
    kept = [r.pn for r in RECORDS if r.emp in employers]
    assert shown == kept
    assert missing == [r.pn for r in RECORDS if r.emp not in employers]
    assert [f["id"] for f in msgspec.json.decode(b"[" + items + b"]")] == kept


def test_nothing_found(twin: ModuleType) -> None:
    assert twin.render_found(["A", "B"], [None, None], ALL_FIELDS, None) == (b"", ["A", "B"], [])


def test_twins_agree_on_the_simulators_records() -> None:
    for fields in FIELD_SETS:
        both(IDS, VALUES, fields)
        both(IDS, VALUES, fields, frozenset({RECORDS[5].emp}))


def test_a_field_that_permit_views_do_not_have_is_refused(twin: ModuleType) -> None:
    with pytest.raises(ValueError, match="not a field"):
        twin.render_found(["A"], [None], ("pn", "password"), None)


# --- strings and numbers: JSON escapes, UTF-8, every msgpack form msgspec takes -----------

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@st.composite
def records(draw: st.DrawFn) -> PermitRecord:
    cards = draw(st.lists(st.builds(Card, cn=TEXT, status=st.sampled_from(["active", "lost", "replaced"])),
                          max_size=4))
    return PermitRecord(
        pn=draw(TEXT), n=draw(TEXT), nat=draw(TEXT), dob=draw(TEXT), cat=draw(st.sampled_from("ABC")),
        emp=draw(TEXT), vf=draw(TEXT), vt=draw(TEXT),
        v=draw(st.integers(min_value=-(2**63), max_value=2**64 - 1)),
        status=draw(st.sampled_from(["active", "cancelled"])), ssn=draw(st.none() | TEXT), cards=tuple(cards),
        si=draw(st.none() | st.integers(min_value=0, max_value=2**64 - 1)),
        ci=draw(st.none() | st.integers(min_value=0, max_value=2**64 - 1)),
    )


@SETTINGS
@given(record=records(), asked=TEXT, fields=st.sampled_from(FIELD_SETS))
def test_any_record_renders_the_same(record: PermitRecord, asked: str, fields: tuple[str, ...]) -> None:
    items, _missing, shown = both([asked], [encode_record(record)], fields)
    found = msgspec.json.decode(b"[" + items + b"]")
    assert found[0]["id"] == asked
    assert found[0]["permit"]["pn"] == record.pn
    assert shown == [record.pn]


@SETTINGS
@given(record=records(), cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=8),
       flips=st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(1, 255)), max_size=3))
def test_a_damaged_record_is_refused_by_both_or_rendered_alike(
    record: PermitRecord, cut: int, junk: bytes, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(encode_record(record))
    for at, mask in flips:
        if data:
            data[at % len(data)] ^= mask
    damaged = bytes(data[: cut % (len(data) + 1)]) + junk
    both(["X"], [damaged])


def _fixstr(text: bytes) -> bytes:
    return bytes([0xA0 | len(text)]) + text


def _record(*fields: bytes, count: int | None = None) -> bytes:
    n = len(fields) if count is None else count
    return bytes([0x90 | n]) + b"".join(fields)


BASE = [_fixstr(t) for t in (b"WP1", b"SMITH", b"GBR", b"1985-04-12", b"B", b"91110000100000000A",
                             b"2025-01-01", b"2027-01-01")]
ONE = b"\x01"
CARDS = b"\x91\x92" + _fixstr(b"C1") + _fixstr(b"active")


@pytest.mark.parametrize("data", [
    _record(*BASE, ONE),                                            # 9 fields: status, ssn and cards default
    _record(*BASE, ONE, _fixstr(b"cancelled")),                     # 10
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0"),               # 11, ssn nil
    _record(*BASE, ONE, _fixstr(b"active"), _fixstr(b"S1"), CARDS),  # 12
    b"\xdc\x00\x09" + b"".join(BASE) + ONE,                         # array 16 header
    b"\xdd\x00\x00\x00\x09" + b"".join(BASE) + ONE,                 # array 32 header
    _record(b"\xd9\x03WP1", *BASE[1:], ONE),                        # str 8 for a short string
    _record(b"\xda\x00\x03WP1", *BASE[1:], ONE),                    # str 16
    _record(b"\xdb\x00\x00\x00\x03WP1", *BASE[1:], ONE),            # str 32
    _record(*BASE, b"\xcc\xff"), _record(*BASE, b"\xcd\xff\xff"),   # uint 8, uint 16
    _record(*BASE, b"\xce\xff\xff\xff\xff"),                        # uint 32
    _record(*BASE, b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),        # uint 64, the largest
    _record(*BASE, b"\xd0\x80"), _record(*BASE, b"\xd1\x80\x00"),   # int 8, int 16: most negative
    _record(*BASE, b"\xd2\x80\x00\x00\x00"),                        # int 32
    _record(*BASE, b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),        # int 64, the most negative
    _record(*BASE, b"\xff"),                                        # negative fixint -1
    _record(*BASE, b"\xd0\x05"),                                    # int 8, positive
    _record(_fixstr('é"\\\x00\x1f\x7f'.encode()), *BASE[1:], ONE),  # escapes and a 2-byte character
    _record(_fixstr("\U0001F600\u2028".encode()), *BASE[1:], ONE),  # 4- and 3-byte characters
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0",                # cards: one replaced, then active twice
            b"\x93" + b"\x92" + _fixstr(b"C1") + _fixstr(b"replaced") + b"\x92" + _fixstr(b"C1")
            + _fixstr(b"active") + b"\x92" + _fixstr(b"C2") + _fixstr(b"active")),
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x91\x92" + _fixstr(b"C1") + _fixstr(b"lost")),
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", ONE),           # 13: si
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", ONE, b"\x02"),  # 14: si and ci
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", b"\xc0", b"\xc0"),  # si and ci nil
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90",                 # si uint 32, ci uint 64
            b"\xce\x00\x0f\x42\x40", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", b"\xd0\x05", b"\xd3" + bytes(8)),  # signed forms, >= 0
])
def test_every_encoding_msgspec_takes_renders_alike(data: bytes) -> None:
    assert msgspec.msgpack.decode(data, type=PermitRecord)  # the reference takes it
    assert both(["WP1"], [data]) is not RecordError


@pytest.mark.parametrize("data", [
    b"",                                                            # nothing at all
    b"\xc1garbage",                                                 # a reserved byte
    _record(*BASE),                                                 # 8 fields: v missing
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", ONE, ONE, ONE),  # 15 fields
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", b"\xff"),  # si below 0
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", ONE, b"\xd1\xff\x00"),  # ci below 0
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", _fixstr(b"1")),  # si a string
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", ONE, b"\xc3"),  # ci a bool
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x90", b"\xcb" + bytes(8)),  # si a float 64
    _record(*BASE, ONE)[:-1],                                       # truncated
    _record(*BASE, ONE) + b"\x00",                                  # trailing bytes
    b"\x80",                                                        # a map, not an array
    _record(*BASE[:4], _fixstr(b"D"), *BASE[5:], ONE),              # category outside A, B, C
    _record(*BASE, ONE, _fixstr(b"revoked")),                       # status outside its Literal
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x91\x92" + _fixstr(b"C1") + _fixstr(b"stolen")),
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\x91\x91" + _fixstr(b"C1")),  # a card of one field
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0",                # a card of three fields
            b"\x91\x93" + _fixstr(b"C1") + _fixstr(b"active") + ONE),
    _record(*BASE, ONE, _fixstr(b"active"), b"\xc0", b"\xc0"),      # cards nil
    _record(*BASE, b"\xca\x3f\x80\x00\x00"),                        # v a float 32
    _record(*BASE, b"\xc3"),                                        # v a bool
    _record(*BASE, _fixstr(b"1")),                                  # v a string
    _record(b"\xc0", *BASE[1:], ONE),                               # pn nil
    _record(b"\xc4\x03WP1", *BASE[1:], ONE),                        # pn as bin, not str
    _record(*BASE, ONE, _fixstr(b"active"), b"\x01"),               # ssn an int
    _record(_fixstr(b"\xed\xa0\x80"), *BASE[1:], ONE),              # a UTF-16 surrogate in UTF-8
    _record(_fixstr(b"\xc0\x80"), *BASE[1:], ONE),                  # an overlong NUL
    _record(_fixstr(b"\xf4\x90\x80\x80"), *BASE[1:], ONE),          # past U+10FFFF
    _record(_fixstr(b"\xe2\x82"), *BASE[1:], ONE),                  # a 3-byte character cut short
    _record(_fixstr(b"\x80"), *BASE[1:], ONE),                      # a lone continuation byte
    _record(b"\xdb\xff\xff\xff\xff", *BASE[1:], ONE),               # a string longer than the record
    b"\xdd\xff\xff\xff\xff" + b"".join(BASE) + ONE,                 # an array longer than the record
])
def test_what_msgspec_refuses_both_refuse(data: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, UnicodeDecodeError)):
        msgspec.msgpack.decode(data, type=PermitRecord)
    assert both(["WP1"], [data]) is RecordError


def test_values_that_are_not_bytes_are_a_type_error(twin: ModuleType) -> None:
    with pytest.raises(TypeError):
        twin.render_found(["A"], ["not bytes"], ALL_FIELDS, None)
    with pytest.raises(ValueError):
        twin.render_found(["A", "B"], [None], ALL_FIELDS, None)


def test_long_strings_use_the_wider_headers() -> None:
    record = msgspec.structs.replace(RECORDS[0], n="N" * 300, emp="E" * 70_000)
    data = encode_record(record)
    assert b"\xda\x01\x2c" in data and b"\xdb\x00\x01\x11\x70" in data  # str 16 and str 32 headers
    assert both([record.pn], [data]) is not RecordError


@pytest.mark.parametrize("special", ['"', "\\", "\x00", "\x1f", "\n", "\x7f", "é", "中", "\U0001F600"])
def test_a_character_to_escape_or_decode_at_every_position(special: str) -> None:
    # the word-at-a-time scans (8 bytes, the last word partly past the string) must see
    # it wherever it is: in a whole word, in the tail, in a field at the record's end
    for length in range(1, 20):
        for at in range(length):
            text = "a" * at + special + "b" * (length - at - 1)
            record = msgspec.structs.replace(RECORDS[0], n=text, cards=(Card(text, "active"),))
            items, _missing, _shown = both([text], [encode_record(record)])
            found = msgspec.json.decode(b"[" + items + b"]")[0]
            assert found["id"] == text and found["permit"]["n"] == text and found["permit"]["cn"] == text


# --- the compact stored layout (verifier.index.stored): the pn is the id asked ----------------

COMPACT = [encode_stored(r) for r in RECORDS]


def test_the_compact_values_are_the_stored_codecs_in_both_its_twins() -> None:
    assert COMPACT == [_stored_py.encode_stored(r) for r in RECORDS] == [_stored_c.encode_stored(r) for r in RECORDS]


@pytest.mark.parametrize("fields", FIELD_SETS, ids=lambda f: str(len(f)))
def test_a_compact_value_renders_as_the_legacy_value_of_its_record(twin: ModuleType, fields: tuple[str, ...]) -> None:
    for employers in (None, frozenset({RECORDS[0].emp, RECORDS[9].emp})):
        legacy = twin.render_found(IDS, VALUES, fields, employers)
        assert twin.render_found(IDS, COMPACT, fields, employers) == legacy
        mixed = [c if i % 2 else v for i, (v, c) in enumerate(zip(VALUES, COMPACT))]  # during an upgrade
        assert twin.render_found(IDS, mixed, fields, employers) == legacy


def test_twins_agree_on_the_simulators_records_stored_compact() -> None:
    for fields in FIELD_SETS:
        both(IDS, COMPACT, fields)
        both([*IDS, "WP-UNKNOWN"], [*COMPACT, None], fields, frozenset({RECORDS[5].emp}))


def _storable(record: PermitRecord) -> PermitRecord:
    # the compact layout holds a v >= 0 and Status List entries under 2**64 (as the legacy one)
    return msgspec.structs.replace(record, v=abs(record.v) % 2**64)


DATES = st.sampled_from(["1985-04-12", "1985-4-12", "1985-02-30", "", "0000-01-01", "0001-01-01", "9999-12-31",
                         "2000-02-29", "1900-02-29", "1969-12-31"]) | TEXT


@SETTINGS
@given(record=records(), fields=st.sampled_from(FIELD_SETS), dob=DATES, vf=DATES, vt=DATES)
def test_any_record_stored_compact_renders_as_its_legacy_value(
    record: PermitRecord, fields: tuple[str, ...], dob: str, vf: str, vt: str
) -> None:
    record = msgspec.structs.replace(_storable(record), dob=dob, vf=vf, vt=vt)
    compact = both([record.pn], [encode_stored(record)], fields)
    assert compact == both([record.pn], [encode_record(record)], fields)
    assert compact[2] == [record.pn]


@SETTINGS
@given(record=records(), cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=8),
       flips=st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(1, 255)), max_size=3))
def test_a_damaged_compact_value_is_refused_by_both_or_rendered_alike(
    record: PermitRecord, cut: int, junk: bytes, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(encode_stored(_storable(record)))
    for at, mask in flips:
        if data:
            data[at % len(data)] ^= mask
    both(["X"], [bytes(data[: cut % (len(data) + 1)]) + junk])


def test_every_truncation_and_byte_change_of_a_compact_value() -> None:
    data = encode_stored(msgspec.structs.replace(RECORDS[7], n="MÜLLER, 李", vt="2027-2-3"))
    for cut in range(len(data)):
        assert both(["X"], [data[:cut]]) is RecordError
    for at in range(len(data)):
        for value in (0x00, 0x03, 0x7F, 0x80, 0x9C, 0xA0, 0xC0, 0xCC, 0xD0, 0xE0, 0xFF, data[at] ^ 0x01):
            both(["X"], [data[:at] + bytes([value]) + data[at + 1:]])


def test_what_the_stored_codec_refuses_the_renderers_refuse() -> None:
    # the stored codec's own list of refused compact values (tests/index/test_stored_codec.py)
    from tests.index import test_stored_codec as codec_tests

    marks = next(m for m in codec_tests.test_what_the_reference_refuses_both_refuse.pytestmark
                 if m.name == "parametrize")
    for data in marks.args[1]:
        assert both(["WP1"], [data]) is RecordError, data
    marks = next(m for m in codec_tests.test_every_form_of_an_element_is_read_alike.pytestmark
                 if m.name == "parametrize")
    for data in marks.args[1]:
        assert both(["WP1"], [data]) is not RecordError, data


@pytest.mark.parametrize("special", ['"', "\\", "\x00", "\n", "é", "中", "\U0001F600"])
def test_a_compact_value_with_a_character_to_escape_at_every_position(special: str) -> None:
    for length in range(1, 20):
        for at in range(length):
            text = "a" * at + special + "b" * (length - at - 1)
            record = msgspec.structs.replace(RECORDS[0], pn=text, n=text, vt=text, cards=(Card(text, "active"),))
            items = both([text], [encode_stored(record)])
            assert items == both([text], [encode_record(record)])
            found = msgspec.json.decode(b"[" + items[0] + b"]")[0]
            assert found["id"] == text and found["permit"]["pn"] == text and found["permit"]["cn"] == text


@pytest.mark.parametrize("cards", [
    (Card("C1", "replaced"), Card("C1", "active"), Card("C2", "active")),  # the first active; its first status
    (Card("C1", "lost"),), (), (Card("", "active"),),
])
def test_a_compact_values_cards_render_as_the_legacy_values(cards: tuple[Card, ...]) -> None:
    record = msgspec.structs.replace(RECORDS[0], cards=cards)
    assert both([record.pn], [encode_stored(record)]) == both([record.pn], [encode_record(record)])
