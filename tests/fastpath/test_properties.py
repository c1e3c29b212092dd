"""Property tests (hypothesis): round trips, mutations, and both twins agreeing on anything.

No fixtures here (hypothesis runs many examples in one test call): the twins
are loaded in each test, and a missing compiled twin fails the test.
"""

from __future__ import annotations

import datetime
import importlib
from types import ModuleType
from typing import Any

import cbor2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastpath
from fastpath import codes

from . import craft
from .craft import ACTIVE, NOW, PERMIT, REGIONAL, RETIRED, REVOKED, STRANGER, qr, sign1

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRUST = fastpath.TrustList.from_jwks(craft.trust_list_json())


def twins() -> tuple[ModuleType, ModuleType]:
    return importlib.import_module("fastpath._verify_c"), importlib.import_module("fastpath._verify_py")


def same_verdict(verify: str, *args: Any, **kwargs: Any) -> fastpath.Verdict:
    """Run one public function on both twins; they must agree on every compared field."""
    c_twin, py_twin = twins()
    c_verdict = getattr(c_twin, verify)(*args, **kwargs)
    py_verdict = getattr(py_twin, verify)(*args, **kwargs)
    assert (c_verdict.result, c_verdict.reasons, c_verdict.profile, c_verdict.claims, c_verdict.permit) == (
        py_verdict.result, py_verdict.reasons, py_verdict.profile, py_verdict.claims, py_verdict.permit)
    assert c_verdict == py_verdict  # kid and card key too
    return py_verdict


# --- strategies ---------------------------------------------------------------
def dates(min_value: datetime.date = datetime.date(1, 1, 1)) -> st.SearchStrategy[str]:
    return st.dates(min_value=min_value).map(lambda d: d.isoformat())


@st.composite
def permits(draw: st.DrawFn, profile: str = "WP1") -> dict[str, Any]:
    valid_from, valid_to = sorted(draw(st.lists(st.dates(), min_size=2, max_size=2)))
    permit: dict[str, Any] = {
        "pn": draw(st.text(min_size=1, max_size=30)),
        "n": draw(st.text(min_size=1, max_size=60)),
        "nat": draw(st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        "dob": draw(dates()),
        "cat": draw(st.sampled_from("ABC")),
        "emp": draw(st.from_regex(r"[0-9A-Z]{18}", fullmatch=True)),
        "vf": valid_from.isoformat(),
        "vt": valid_to.isoformat(),
        "v": draw(st.integers(0, 2**64 - 1)),
    }
    for key in ("ssn", "cn"):
        if profile == "ES1" or draw(st.booleans()):
            permit[key] = draw(st.text(min_size=1, max_size=20))
    return permit


UNKNOWN_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.text(max_size=10),
                           st.binary(max_size=10), st.lists(st.integers(0, 9), max_size=3))


@st.composite
def signed_tokens(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(profile, claims by name as signed, the permit as signed, the permit with unknown keys added)."""
    profile = draw(st.sampled_from(["WP1", "ES1"]))
    permit = draw(permits(profile))
    extra = draw(st.dictionaries(st.text(max_size=6).filter(lambda k: k not in craft.PERMIT), UNKNOWN_VALUES,
                                 max_size=3))
    if profile == "ES1":
        iat = draw(st.integers(NOW - 200, NOW + 60))
        exp = draw(st.integers(max(iat + 1, NOW - 59), iat + 300))
    else:
        iat = draw(st.integers(NOW - 10**9, NOW + 60))
        exp = draw(st.integers(max(iat + 1, NOW - 59), 2**64 - 1))
    named: dict[str, Any] = {"iss": draw(st.sampled_from(sorted(ACTIVE.issuers))), "exp": exp, "iat": iat}
    if draw(st.booleans()):
        named["nbf"] = draw(st.integers(-(2**63), NOW + 60))
    if profile == "ES1" or draw(st.booleans()):
        named["cti"] = draw(st.binary(min_size=8, max_size=32))
    if draw(st.booleans()):  # WIRE-FORMAT 8: kept out of ``claims``, on the verdict as status_ref
        named["status"] = craft.status_claim(draw(st.integers(0, 2**64 - 1)),
                                             draw(st.text(min_size=1, max_size=40)))
    return profile, named, permit, {**permit, **extra}


def token_text(profile: str, named: dict[str, Any], permit: dict[str, Any], issuer: craft.Issuer = ACTIVE) -> str:
    keys = {"iss": 1, "exp": 4, "nbf": 5, "iat": 6, "cti": 7, "status": 65535}
    payload: dict[int, Any] = {keys[name]: value for name, value in named.items()}
    payload[-70001] = permit
    return qr(sign1(issuer, payload), f"{profile}:")


# --- round trips ----------------------------------------------------------------
@PROPERTY_SETTINGS
@given(signed_tokens(), st.sampled_from([ACTIVE, RETIRED]))
def test_crafted_codes_round_trip(token: Any, issuer: craft.Issuer) -> None:
    profile, named, permit, permit_with_extras = token
    verdict = same_verdict("verify_qr", token_text(profile, named, permit_with_extras, issuer), TRUST, NOW)
    assert verdict.result == codes.VALID, verdict
    assert verdict.profile == profile
    status = named.pop("status", None)
    assert verdict.claims == named
    assert verdict.permit == permit
    assert verdict.status_ref == (None if status is None else
                                  (status["status_list"]["uri"], status["status_list"]["idx"]))
    assert verdict.kid == issuer.kid


# --- mutations -------------------------------------------------------------------
MUTATION_ALPHABET = craft.BASE45_ALPHABET + "a\n\u00e9"


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str]:
    """(a valid code, the code with one character flipped, inserted or deleted)."""
    profile, named, permit, _ = draw(signed_tokens())
    text = token_text(profile, named, permit)
    i = draw(st.integers(0, len(text) - 1))
    action = draw(st.sampled_from(["flip", "insert", "delete"]))
    if action == "delete":
        mutated = text[:i] + text[i + 1:]
    else:
        ch = draw(st.sampled_from(MUTATION_ALPHABET))
        mutated = text[:i] + ch + text[i + (action == "flip"):]
    assume(mutated != text)
    return text, mutated


@PROPERTY_SETTINGS
@given(mutations())
def test_a_mutated_code_is_never_valid(pair: tuple[str, str]) -> None:
    original, mutated = pair
    verdict = same_verdict("verify_qr", mutated, TRUST, NOW, cache=False)
    if verdict.ok:
        # The one way a mutation can stay VALID: it changed only the unused padding
        # bits of the last deflate byte (RFC 1951 ignores them), so every zlib
        # reader inflates the very message that was signed. Nothing else may pass.
        assert craft.message_of(mutated) == craft.message_of(original), mutated


def test_deflate_padding_bits_are_the_known_valid_mutation() -> None:
    # the case the property above allows: substitutions near the end of one code (the last
    # deflate byte sits just before the Adler-32's 6 characters) that inflate to the same message
    original = craft.wp1(ACTIVE)
    found = []
    for i in range(len(original) - 15, len(original)):
        for ch in craft.BASE45_ALPHABET:
            mutated = original[:i] + ch + original[i + 1:]
            if mutated != original and craft.message_of(mutated) == craft.message_of(original):
                found.append(mutated)
    assert found, "expected a padding-bit variant of this code"
    reference = same_verdict("verify_qr", original, TRUST, NOW, cache=False)
    for mutated in found:
        # the same signed message, so the same verdict: nothing was forged
        assert same_verdict("verify_qr", mutated, TRUST, NOW, cache=False) == reference


# --- both twins agree on anything ------------------------------------------------
@PROPERTY_SETTINGS
@given(st.text(max_size=300))
def test_twins_agree_on_random_text(text: str) -> None:
    same_verdict("verify_qr", text, TRUST, NOW, cache=False)


@PROPERTY_SETTINGS
@given(st.sampled_from(["WP1:", "ES1:"]), st.text(alphabet=craft.BASE45_ALPHABET, max_size=300))
def test_twins_agree_on_random_base45(prefix: str, body: str) -> None:
    verdict = same_verdict("verify_qr", prefix + body, TRUST, NOW, cache=False)
    assert verdict.result == codes.MALFORMED


@PROPERTY_SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["WP1:", "ES1:"]))
def test_twins_agree_on_random_messages(message: bytes, prefix: str) -> None:
    verdict = same_verdict("verify_qr", qr(message, prefix), TRUST, NOW, cache=False)
    assert verdict.result in (codes.MALFORMED, codes.UNSUPPORTED, codes.UNKNOWN_KEY)


CBOR_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.floats(allow_nan=False),
              st.text(max_size=12), st.binary(max_size=40)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(st.integers(-(2**16), 2**16), st.text(max_size=4)), children, max_size=4),
    max_leaves=12,
)
HEADER_LABELS = st.sampled_from([1, 2, 4, 5, 33, -1, "1", "kid"])


@st.composite
def headers(draw: st.DrawFn, kid: bytes) -> dict[Any, Any]:
    header: dict[Any, Any] = draw(st.dictionaries(HEADER_LABELS, CBOR_VALUES, max_size=3))
    if draw(st.booleans()):
        header[1] = draw(st.sampled_from([-8, -8, -8, -7, "EdDSA"]))
    if draw(st.booleans()):
        header[4] = draw(st.sampled_from([kid, kid, kid[:7], "kid"]))
    return header


@st.composite
def claims_maps(draw: st.DrawFn) -> dict[Any, Any]:
    """Claims near the valid ones: each claim and permit field kept, dropped or replaced at random."""
    base = craft.claims(draw(st.sampled_from(["WP1", "ES1", "CARD"])))
    result: dict[Any, Any] = {}
    for key, value in base.items():
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue
        if choice == 1:
            value = draw(CBOR_VALUES)
        elif isinstance(value, dict):
            value = {k: (draw(st.one_of(CBOR_VALUES, st.sampled_from(["", "2025-02-29", "ABC", "A", 0])))
                         if draw(st.integers(0, 6)) == 0 else v)
                     for k, v in value.items() if draw(st.integers(0, 8))}
        result[key] = value
    result.update(draw(st.dictionaries(st.integers(-100, 100), CBOR_VALUES, max_size=2)))
    return result


@PROPERTY_SETTINGS
@given(headers(ACTIVE.kid), headers(ACTIVE.kid), claims_maps(), st.booleans(),
       st.sampled_from(["WP1:", "ES1:"]), st.integers(NOW - 10**6, NOW + 10**6))
def test_twins_agree_on_random_signed_structures(protected: dict[Any, Any], unprotected: dict[Any, Any],
                                                 payload: dict[Any, Any], tag: bool, prefix: str, now: int) -> None:
    # signed for real, so that random headers and claims reach the later checks
    message = sign1(ACTIVE, cbor2.dumps(payload), protected=cbor2.dumps(protected),
                    unprotected=cbor2.dumps(unprotected), tag=tag)
    same_verdict("verify_qr", qr(message, prefix), TRUST, now, cache=False)


@PROPERTY_SETTINGS
@given(st.binary(max_size=600))
def test_twins_agree_on_random_card_certificates(certificate: bytes) -> None:
    verdict = same_verdict("verify_card_certificate", certificate, TRUST, NOW)
    assert verdict.result != codes.VALID
    assert verdict.profile == codes.PROFILE_CARD


@PROPERTY_SETTINGS
@given(claims_maps(), st.sampled_from([ACTIVE, REVOKED, STRANGER, REGIONAL]), st.binary(min_size=30, max_size=34),
       st.integers(NOW - 10**6, NOW + 10**6))
def test_twins_agree_on_signed_card_reads(payload: dict[Any, Any], issuer: craft.Issuer, challenge: bytes,
                                          now: int) -> None:
    certificate = sign1(issuer, cbor2.dumps(payload))
    signature = craft.card_sign(challenge)
    verdict = same_verdict("verify_card", certificate, challenge, signature, TRUST, now)
    c_twin, py_twin = twins()
    assert c_twin.verify_card(certificate, challenge, signature, TRUST, now).card_public_key == \
        verdict.card_public_key


def test_the_strategies_reach_valid_codes() -> None:
    # the random structures are not all junk: the unchanged base claims verify
    assert same_verdict("verify_qr", qr(sign1(ACTIVE, craft.claims("WP1"))), TRUST, NOW).ok
    assert PERMIT == craft.claims("WP1")[-70001]
