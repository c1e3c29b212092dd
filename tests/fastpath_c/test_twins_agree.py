"""Both twins give the same verdict on structured, mostly malformed inputs (hypothesis).

Byte-level fuzzing (fuzz/) seldom builds deep CBOR; here hypothesis builds it
from a grammar that also breaks it (non-preferred arguments, reserved
additional info, indefinite lengths, wrong counts, duplicate and non-text keys,
invalid UTF-8, tags, stray simple values, truncation, trailing bytes), and puts
it at each layer: the whole COSE message, a signed payload, a signed protected
header, an unprotected map. Claims are also drawn from a menu of valid and
invalid values per key. The Python twin is the reference.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpath
from fastpath import _verify_c as C
from fastpath import _verify_py as PY
from fastpath import codes

from ..fastpath import craft
from ..fastpath.craft import ACTIVE, NOW, PERMIT, REVOKED, STRANGER, bstr, enc, head, qr, sign1

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def trust() -> fastpath.TrustList:
    return fastpath.TrustList.from_jwks(craft.trust_list_json())


def assert_twins_agree(text: str, trust: fastpath.TrustList, now: int = NOW) -> fastpath.Verdict:
    c_verdict = C.verify_qr(text, trust, now, cache=False)
    py_verdict = PY.verify_qr(text, trust, now, cache=False)
    assert c_verdict == py_verdict, (text, c_verdict.as_dict(), py_verdict.as_dict())
    assert c_verdict.result in fastpath.codes.ALL_RESULTS
    return c_verdict


# --- a grammar of CBOR that is sometimes broken ---------------------------------------
ARGUMENTS = st.one_of(st.integers(0, 23), st.integers(0, 0xFF), st.integers(0, 0xFFFF),
                      st.integers(0, 0xFFFFFFFF), st.integers(0, 2**64 - 1))
SIZES = st.sampled_from([None] * 30 + [0, 1, 2, 4, 8])  # None: shortest; else forced (maybe non-preferred)


def _head(major: int, argument: int, size: int | None) -> bytes:
    if size == 0 and argument > 23 or size and argument >= 1 << (8 * size):
        size = None
    return head(major, argument, size)


@st.composite
def ints(draw: st.DrawFn) -> bytes:
    return _head(draw(st.sampled_from([0, 1])), draw(ARGUMENTS), draw(SIZES))


@st.composite
def strings(draw: st.DrawFn) -> bytes:
    major = draw(st.sampled_from([2, 3]))
    if major == 3 and draw(st.booleans()):
        content = draw(st.text(max_size=12)).encode("utf-8", "surrogatepass")
    else:
        content = draw(st.binary(max_size=12))
    size = draw(SIZES)
    length = len(content) + draw(st.sampled_from([0] * 10 + [1, -1, 1000]))  # sometimes a lie
    return _head(major, max(length, 0), size) + content


SIMPLE = st.one_of(
    st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf9\x3c\x00", b"\xfa\x3f\x80\x00\x00",
                     b"\xfb" + b"\x3f\xf0" + b"\x00" * 6, b"\xf9\x00"]),
    st.integers(0xE0, 0xFF).map(lambda b: bytes((b,))),                      # any simple / float / break
    st.tuples(st.integers(0, 7), st.integers(28, 31)).map(lambda t: bytes((t[0] << 5 | t[1],))),  # reserved, indefinite
)
KEYS = st.one_of(st.sampled_from([enc(1), enc(2), enc(4), enc(-8), enc("1"), enc("pn"), enc(-70001)]),
                 ints(), strings(), st.just(b"\x80"), st.just(b"\xf6"))
TAGS = st.sampled_from([18, 18, 0, 1, 24, 55799])


def containers(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def array(draw: st.DrawFn) -> bytes:
        items = draw(st.lists(children, max_size=5))
        count = len(items) + draw(st.sampled_from([0] * 8 + [1, -1, 2**32]))
        return _head(4, max(count, 0), draw(SIZES)) + b"".join(items)

    @st.composite
    def mapping(draw: st.DrawFn) -> bytes:
        pairs = draw(st.lists(st.tuples(KEYS, children), max_size=5))
        count = len(pairs) + draw(st.sampled_from([0] * 8 + [1, -1]))
        return _head(5, max(count, 0), draw(SIZES)) + b"".join(k + v for k, v in pairs)

    @st.composite
    def tagged(draw: st.DrawFn) -> bytes:
        return _head(6, draw(TAGS), draw(SIZES)) + draw(children)

    return st.one_of(array(), mapping(), tagged())


ITEMS = st.recursive(st.one_of(ints(), strings(), SIMPLE), containers, max_leaves=24)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    data = draw(ITEMS)
    edit = draw(st.sampled_from(["none"] * 6 + ["cut", "trail"]))
    if edit == "cut" and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif edit == "trail":
        data += draw(st.binary(min_size=1, max_size=3))
    return data


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """Nesting around the limit of 8: arrays and maps, inside a signed payload or a message."""
    depth = draw(st.integers(1, 11))
    inner = draw(st.sampled_from([b"\x01", b"\x80", b"\xa0", b"\x9f\xff"]))
    for _ in range(depth):
        inner = (b"\x81" + inner) if draw(st.booleans()) else (b"\xa1\x01" + inner)
    return inner


# --- the layers ------------------------------------------------------------------------
@SETTINGS
@given(message=st.one_of(documents(), deep()), prefix=st.sampled_from(["WP1:", "ES1:"]))
def test_any_message(message: bytes, prefix: str, trust: fastpath.TrustList) -> None:
    assert_twins_agree(qr(message, prefix), trust)


@SETTINGS
@given(message=documents())
def test_any_message_in_a_cose_array(message: bytes, trust: fastpath.TrustList) -> None:
    # The outer structure right, one element anything.
    protected = enc({1: -8, 4: ACTIVE.kid})
    body = b"\xd2\x84" + bstr(protected) + message + bstr(b"payload") + bstr(b"\x00" * 64)
    assert_twins_agree(qr(body), trust)


@SETTINGS
@given(payload=st.one_of(documents(), deep()), tag=st.booleans(), prefix=st.sampled_from(["WP1:", "ES1:"]))
def test_any_signed_payload(payload: bytes, tag: bool, prefix: str, trust: fastpath.TrustList) -> None:
    assert_twins_agree(qr(sign1(ACTIVE, payload, tag=tag), prefix), trust)


@SETTINGS
@given(protected=documents(), unprotected=st.one_of(st.just(b"\xa0"), documents()))
def test_any_signed_header(protected: bytes, unprotected: bytes, trust: fastpath.TrustList) -> None:
    assert_twins_agree(qr(sign1(ACTIVE, protected=protected, unprotected=unprotected)), trust)


def _one_map(data: bytes) -> bool:
    """cbor2 reads ``data`` as exactly one item, a map (cbor2.loads would ignore bytes after it)."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except Exception:  # anything cbor2 cannot read, whatever it raises
        return False
    return stream.tell() == len(data) and isinstance(item, Mapping)


@SETTINGS
@given(protected=st.one_of(st.just(b""), st.just(enc({1: -7, 4: ACTIVE.kid})), st.just(enc({1: -8, 4: ACTIVE.kid})),
                           st.just(enc({1: -8})), documents()),
       signature_length=st.sampled_from([64, 64, 64, 0, 63, 65, 70, 72]), card=st.booleans())
def test_signature_length_and_protected_header_rules(protected: bytes, signature_length: int, card: bool,
                                                    trust: fastpath.TrustList) -> None:
    # WIRE-FORMAT 2 (issue 14), checked against its own words rather than against a twin:
    # a signature of any length but 64 is MALFORMED whatever the header says; an empty
    # protected bstr has no alg (UNSUPPORTED); a protected bstr that is not exactly one
    # map is MALFORMED. 64-byte signatures are real, so good headers get past them.
    signature = None if signature_length == 64 else bytes(signature_length)
    message = sign1(ACTIVE, craft.claims("CARD" if card else "WP1"), protected=protected,
                    unprotected={4: ACTIVE.kid}, signature=signature)
    if card:
        verdict = C.verify_card_certificate(message, trust, NOW)
        assert verdict == PY.verify_card_certificate(message, trust, NOW)
    else:
        verdict = assert_twins_agree(qr(message), trust)
    if signature_length != 64:
        assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (codes.R_COSE_SIGNATURE_LENGTH,))
    elif protected == b"":
        assert (verdict.result, verdict.reasons) == (codes.UNSUPPORTED, (codes.R_HEADER_ALG_MISSING,))
    elif not _one_map(protected):
        assert verdict.result == codes.MALFORMED, verdict
    elif verdict.result == codes.MALFORMED:
        # one map for cbor2, but our reader is stricter (preferred serialization, duplicate
        # keys, key types, depth), or the map's own kid is not 8 bytes
        assert verdict.reasons[0].startswith(("cbor.", "header.kid_")), verdict


# --- claims from a menu of right and wrong values ---------------------------------------
WRONG = [None, True, 1.5, -1, 0, 2**64 - 1, -(2**64), "", "x", b"", b"12345678", [], {}, "１２３"]
DATES = ["2025-03-01", "2024-02-29", "2023-02-29", "0000-01-01", "0001-01-01", "9999-12-31",
         "2025-13-01", "2025-00-10", "2025-04-31", "2025-4-01", "２０２５-03-01", "2025-03-01 ",
         "2025/03/01", "1900-02-29", "2000-02-29"]
PERMIT_MENU: dict[str, list[Any]] = {
    "pn": [PERMIT["pn"], "P", *WRONG],
    "n": [PERMIT["n"], "Ø", *WRONG],
    "nat": ["CAN", "can", "CA", "CANA", "ÇAN", *WRONG],
    "dob": DATES + WRONG,
    "cat": ["A", "B", "C", "D", "a", "AB", *WRONG],
    "emp": [PERMIT["emp"], PERMIT["emp"].lower(), PERMIT["emp"][:17], PERMIT["emp"] + "0",
            "91310000MA1FL0AB2Ç", *WRONG],
    "vf": DATES + WRONG,
    "vt": DATES + WRONG,
    "v": [0, 3, 2**64 - 1, -1, *WRONG],
    "ssn": [PERMIT["ssn"], *WRONG],
    "cn": [PERMIT["cn"], *WRONG],
}
ABSENT = object()
RARELY = st.sampled_from([False] * 12 + [True])
# WIRE-FORMAT 8: the status claim (65535), right and wrong, at every level.
STATUS_MENU: list[Any] = [
    craft.status_claim(), craft.status_claim(0), craft.status_claim(2**64 - 1),
    {"status_list": {"idx": 7, "uri": "u", "x": None}, "other": 1},
    *WRONG, {"status_list": None}, {"status_list": {}}, {1: 2}, {"status_list": {"idx": 7}},
    {"status_list": {"uri": "u"}}, *({"status_list": {"idx": wrong, "uri": "u"}} for wrong in WRONG),
    *({"status_list": {"idx": 7, "uri": wrong}} for wrong in WRONG), {"status_list": {"idx": 7, "uri": "u", 5: 5}},
]


def _corrupt(draw: st.DrawFn, valid: dict[Any, Any], menu: dict[Any, list[Any]]) -> dict[Any, Any]:
    """A valid map with 0 to 3 of its keys removed or given another value from the menu."""
    result = dict(valid)
    for key in draw(st.lists(st.sampled_from(list(menu)), max_size=3, unique=True)):
        choice = draw(st.sampled_from([ABSENT, *menu[key]]))
        if choice is ABSENT:
            result.pop(key, None)
        else:
            result[key] = choice
    return result


@st.composite
def permits(draw: st.DrawFn) -> Any:
    if draw(RARELY):
        return draw(st.sampled_from(WRONG))
    permit = _corrupt(draw, PERMIT, PERMIT_MENU)
    if draw(RARELY):
        permit[draw(st.sampled_from([1, b"pn", -1]))] = "x"   # a non-text key
    if draw(st.booleans()):
        permit["extra"] = [1, {"a": None}]                     # an unknown key
    return permit


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[Any, Any]:
    iat = draw(st.sampled_from([NOW - 30] * 6 + [NOW + 30, NOW + 120, NOW - 10**8, -(2**64), 2**64 - 1]))
    lifetime = draw(st.sampled_from([60] * 6 + [300, 301, 0, -5, 10**8]))
    exp = iat + lifetime if -(2**64) <= iat + lifetime < 2**64 else 2**64 - 1
    valid: dict[Any, Any] = {1: "CN-310000", 4: exp, 6: iat, 7: b"cti-0123456789ab",
                             -70001: draw(permits())}
    menu: dict[Any, list[Any]] = {
        1: ["CN-440000", "", 310000, None],
        4: [2**64 - 1, -(2**64), "1", 1.0, True],
        5: [NOW - 100, NOW + 100, NOW + 61, "x", -(2**64)],
        6: ["1", None, 1.5],
        7: [b"1234567", b"x" * 32, b"x" * 33, "cti-0123456789ab"],
        -70001: WRONG,
        65535: STATUS_MENU,
    }
    result = _corrupt(draw, valid, menu)
    if draw(st.booleans()):
        result["1"] = "text key beside int key 1"
    return result


@SETTINGS
@given(claims=claim_sets(), prefix=st.sampled_from(["WP1:", "ES1:"]),
       signer=st.sampled_from([ACTIVE, ACTIVE, ACTIVE, REVOKED, STRANGER, craft.REGIONAL]),
       now=st.sampled_from([NOW, NOW + 10**8, NOW - 10**8, 2**63 - 1, -(2**63), 2**70, 10.5]))
def test_claims(claims: dict[Any, Any], prefix: str, signer: craft.Issuer, now: Any,
                trust: fastpath.TrustList) -> None:
    text = qr(sign1(signer, cbor2.dumps(claims)), prefix)
    verdict = assert_twins_agree(text, trust, now)
    # And through the verdict cache, written by one twin and read by the other.
    shared = fastpath.TrustList.from_jwks(craft.trust_list_json())
    assert C.verify_qr(text, shared, now) == verdict
    assert PY.verify_qr(text, shared, now) == verdict
    assert C.verify_qr(text, shared, now) == verdict


@st.composite
def card_sets(draw: st.DrawFn) -> dict[Any, Any]:
    valid = {"cn": PERMIT["cn"], "ssn": PERMIT["ssn"], "pn": PERMIT["pn"],
             "cpk": bytes(craft.card_key().verify_key)}
    card: Any = _corrupt(draw, valid, {key: [*WRONG, b"\x01" * 32, b"\x01" * 31] for key in valid})
    if draw(RARELY):
        card[draw(st.sampled_from([1, b"cn", -1]))] = "x"  # a non-text key
    if draw(RARELY):
        card = draw(st.sampled_from(WRONG))
    result = craft.claims("CARD")
    result[-70002] = card
    if draw(st.booleans()):
        result[-70001] = dict(PERMIT)  # a permit claim in a card certificate: ignored
    if draw(st.booleans()):
        result[65535] = draw(st.sampled_from(STATUS_MENU))
    return result


@SETTINGS
@given(claims=card_sets(), challenge=st.sampled_from([bytes(range(32)), bytes(31), b"", bytes(33)]),
       signature_kind=st.sampled_from(["right", "wrong", "short", "none"]))
def test_card(claims: dict[Any, Any], challenge: bytes, signature_kind: str, trust: fastpath.TrustList) -> None:
    certificate = sign1(ACTIVE, cbor2.dumps(claims))
    signature = {"right": craft.card_sign(challenge), "wrong": craft.card_sign(challenge, domain=b""),
                 "short": craft.card_sign(challenge)[:63], "none": b""}[signature_kind]
    c_verdict = C.verify_card(certificate, challenge, signature, trust, NOW)
    py_verdict = PY.verify_card(certificate, challenge, signature, trust, NOW)
    assert c_verdict == py_verdict, (c_verdict.as_dict(), py_verdict.as_dict())
