"""The canonical CBOR encoder against RFC 8949's examples and cbor2 as an oracle.

cbor2's ``canonical=True`` sorts map keys length-first (RFC 7049 / RFC 8949
4.2.3), ours bytewise (RFC 8949 4.2.1, core deterministic). The two agree
byte for byte whenever every map's keys encode to the same length; for other
maps the oracle is cbor2 encoding the same value with its maps pre-sorted
bytewise (cbor2 keeps a dict's order outside canonical mode).
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.issuing.cbor import CBOREncodeError, Tag, dumps

# RFC 8949 Appendix A, the items this encoder covers
RFC8949_EXAMPLES = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ("\"\\", "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
    (Tag(1, 1363896240), "c11a514b67b0"),
    (Tag(23, b"\x01\x02\x03\x04"), "d74401020304"),
]


@pytest.mark.parametrize(("value", "expected"), RFC8949_EXAMPLES, ids=[e[1] for e in RFC8949_EXAMPLES])
def test_rfc8949_examples(value: Any, expected: str) -> None:
    assert dumps(value).hex() == expected


def test_argument_boundaries_are_shortest() -> None:
    # each boundary: the last value of one width, the first of the next
    for value, head in [(23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"),
                        (65535, "19ffff"), (65536, "1a00010000"),
                        (4294967295, "1affffffff"), (4294967296, "1b0000000100000000")]:
        assert dumps(value).hex() == head
        assert dumps(-1 - value).hex() == f"{int(head[0], 16) + 2:x}{head[1:]}"
    assert dumps(b"x" * 24)[:2] == b"\x58\x18"
    assert dumps("x" * 256)[:3] == b"\x79\x01\x00"


def test_map_keys_sort_bytewise_not_length_first() -> None:
    # 24 encodes as 18 18, -1 as 20: bytewise 24 comes first, length-first -1 does
    assert dumps({-1: 0, 24: 0}).hex() == "a2181800" + "2000"
    assert cbor2.dumps({-1: 0, 24: 0}, canonical=True).hex() == "a2200018" + "1800"
    # the COSE claims: -70001 (3a...) sorts before the text keys, after 1, 4, 6
    claims = dumps({"x": 1, -70001: {}, 6: 0, 1: "", 4: 0})
    assert claims.hex() == "a5" + "0160" + "0400" + "0600" + "3a00011170a0" + "617801"


def test_tag_18_around_a_cose_sign1() -> None:
    message = [b"\xa1\x01\x27", {}, b"payload", b"\x00" * 64]
    assert dumps(Tag(18, message)) == cbor2.dumps(cbor2.CBORTag(18, message))
    assert dumps(Tag(18, message))[:2] == b"\xd2\x84"


@pytest.mark.parametrize(
    "value",
    [1.5, 2**64, -(2**64) - 1, {1, 2}, object(), {1.0: 1}],
    ids=["float", "too-big", "too-small", "set", "object", "float-key"],
)
def test_refuses_what_it_does_not_encode(value: Any) -> None:
    with pytest.raises(CBOREncodeError):
        dumps(value)


def test_refuses_text_that_is_not_unicode_scalars() -> None:
    with pytest.raises(UnicodeEncodeError):
        dumps("\ud800")  # a lone surrogate has no UTF-8 form


@pytest.mark.parametrize("number", [-1, 2**64, True, "18"])
def test_refuses_a_tag_number_out_of_range(number: Any) -> None:
    with pytest.raises(CBOREncodeError):
        Tag(number, 0)


def test_cyclic_list_is_refused_not_a_recursion_error() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(CBOREncodeError):
        dumps(cyclic)


# --- property tests against cbor2 ---------------------------------------------

_ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
_scalars = st.one_of(
    _ints,
    st.binary(max_size=40),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
)
_keys = st.one_of(_ints, st.text(max_size=8))
# tags that cbor2 does not interpret on decoding (it turns 0/1 into datetimes,
# 2/3 into bignums, ...): the COSE tags and large numbers
_tag_numbers = st.one_of(st.sampled_from([16, 17, 18, 96, 97, 98]), st.integers(min_value=60000, max_value=2**64 - 1))


def _values(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        _scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(keys, children, max_size=6),
            st.builds(Tag, _tag_numbers, children),
        ),
        max_leaves=30,
    )


def _to_cbor2(value: Any, *, presort: bool) -> Any:
    """The same value in cbor2's types; with ``presort``, dicts ordered by the
    bytewise order of cbor2's own encoding of each key."""
    if isinstance(value, Tag):
        return cbor2.CBORTag(value.number, _to_cbor2(value.item, presort=presort))
    if isinstance(value, list):
        return [_to_cbor2(item, presort=presort) for item in value]
    if isinstance(value, dict):
        items = [(k, _to_cbor2(v, presort=presort)) for k, v in value.items()]
        if presort:
            items.sort(key=lambda kv: cbor2.dumps(kv[0]))
        return dict(items)
    return value


@settings(max_examples=300, deadline=None)
@given(_values(_keys))
def test_agrees_with_cbor2_on_bytewise_sorted_maps(value: Any) -> None:
    ours = dumps(value)
    assert ours == cbor2.dumps(_to_cbor2(value, presort=True))
    assert cbor2.loads(ours) == _to_cbor2(value, presort=False)


# keys that all encode to one byte: length-first and bytewise orders coincide
_one_byte_keys = st.integers(min_value=-24, max_value=23)


@settings(max_examples=300, deadline=None)
@given(_values(_one_byte_keys))
def test_agrees_with_cbor2_canonical_mode(value: Any) -> None:
    assert dumps(value) == cbor2.dumps(_to_cbor2(value, presort=False), canonical=True)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=1, alphabet=st.characters(max_codepoint=127)), _ints, max_size=20))
def test_agrees_with_cbor2_canonical_mode_on_one_letter_text_keys(value: dict[str, int]) -> None:
    assert dumps(value) == cbor2.dumps(value, canonical=True)
