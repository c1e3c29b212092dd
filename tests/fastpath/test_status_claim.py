"""The status claim (WIRE-FORMAT 8, CWT claim 65535) in WP1, ES1 and card certificates, on both twins.

``{"status_list": {"idx": uint, "uri": tstr}}``: optional (a token without it
verifies as before, with ``status_ref`` None), strict when there (a wrong type
anywhere in it is MALFORMED), and exposed as ``verdict.status_ref``. Also here:
the keys of the two uses are kept apart (a Status List signer's key never
verifies a permit token).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

import fastpath
from fastpath import StatusRef, codes

from . import craft
from .craft import (
    ACTIVE, CARDS_LIST_URI, NOW, PERMIT, PERMITS_LIST_URI, STATUS_SIGNER, claims, qr, sign1, status_claim,
)

REF = StatusRef(PERMITS_LIST_URI, 7)


def wp1_with(status: Any, **extra: Any) -> str:
    return qr(sign1(ACTIVE, claims("WP1", status=status, **extra)))


# --- a well-formed claim ------------------------------------------------------------
def test_wp1_status_ref(twin: ModuleType, trust: fastpath.TrustList) -> None:
    verdict = twin.verify_qr(wp1_with(status_claim()), trust, NOW, cache=False)
    assert verdict.ok
    assert verdict.status_ref == REF and type(verdict.status_ref) is StatusRef
    assert (verdict.status_ref.uri, verdict.status_ref.idx) == (PERMITS_LIST_URI, 7)
    assert "status" not in verdict.claims  # the claim is on the verdict once, as status_ref
    assert verdict.as_dict()["status_ref"] == {"uri": PERMITS_LIST_URI, "idx": 7}


def test_es1_status_ref(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = qr(sign1(ACTIVE, claims("ES1", iat=NOW - 10, status=status_claim(123))), "ES1:")
    verdict = twin.verify_qr(text, trust, NOW)
    assert verdict.ok and verdict.status_ref == (PERMITS_LIST_URI, 123)


def test_card_certificate_status_ref(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # a card certificate's claim points into the cards list
    certificate = sign1(ACTIVE, claims("CARD", status=status_claim(99, CARDS_LIST_URI)))
    challenge = bytes(range(32))
    verdict = twin.verify_card(certificate, challenge, craft.card_sign(challenge), trust, NOW)
    assert verdict.ok and verdict.status_ref == (CARDS_LIST_URI, 99)
    assert twin.verify_card_certificate(certificate, trust, NOW).status_ref == (CARDS_LIST_URI, 99)


def test_without_the_claim_status_ref_is_none(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # codes minted before status lists still verify as they did
    verdict = twin.verify_qr(craft.wp1(ACTIVE), trust, NOW)
    assert verdict.ok and verdict.status_ref is None
    assert twin.verify_card_certificate(sign1(ACTIVE, claims("CARD")), trust, NOW).status_ref is None


@pytest.mark.parametrize("idx", [0, 1, 2**32, 2**64 - 1], ids=repr)
def test_any_uint_index(twin: ModuleType, trust: fastpath.TrustList, idx: int) -> None:
    verdict = twin.verify_qr(wp1_with(status_claim(idx)), trust, NOW)
    assert verdict.ok and verdict.status_ref == (PERMITS_LIST_URI, idx)


def test_unknown_keys_in_the_claim_are_ignored(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # another status mechanism beside status_list, and an extension inside it
    status = {"status_list": {"idx": 7, "uri": PERMITS_LIST_URI, "x": [1]}, "identifiers": {"a": 1}}
    verdict = twin.verify_qr(wp1_with(status), trust, NOW)
    assert verdict.ok and verdict.status_ref == REF


def test_a_cache_hit_keeps_the_status_ref(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = wp1_with(status_claim())
    assert twin.verify_qr(text, trust, NOW).status_ref == REF
    hit = twin.verify_qr(text, trust, NOW)
    assert hit.cached and hit.status_ref == REF


def test_an_expired_token_keeps_its_status_ref(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # like the claims, it is kept when a later check (issuer, times) fails
    verdict = twin.verify_qr(wp1_with(status_claim(), exp=NOW - 61), trust, NOW)
    assert verdict.result == codes.EXPIRED and verdict.status_ref == REF
    issuer = twin.verify_qr(wp1_with(status_claim(), iss="CN-440000"), trust, NOW)
    assert issuer.reasons == (codes.R_KEY_ISSUER,) and issuer.status_ref == REF


# --- a malformed claim: MALFORMED, one case per error, in the order of the checks ---
STATUS_CASES = [
    # the claim is an int, not a map
    pytest.param(7, "claims.type.status", id="claim-int"),
    # the claim is the status_list map itself, one level up: its keys are idx and uri, no status_list
    pytest.param({"idx": 7, "uri": PERMITS_LIST_URI}, "status.missing.status_list", id="claim-flattened"),
    # the claim as an array of the two values
    pytest.param([PERMITS_LIST_URI, 7], "claims.type.status", id="claim-array"),
    # an empty map: no status_list
    pytest.param({}, "status.missing.status_list", id="claim-empty"),
    # an int key beside status_list: text keys only
    pytest.param({"status_list": {"idx": 7, "uri": PERMITS_LIST_URI}, 1: 2}, "status.type.key", id="claim-int-key"),
    # status_list is a text, the uri alone
    pytest.param({"status_list": PERMITS_LIST_URI}, "status.type.status_list", id="status-list-text"),
    # status_list null
    pytest.param({"status_list": None}, "status.type.status_list", id="status-list-null"),
    # a byte-string key inside status_list
    pytest.param({"status_list": {"idx": 7, "uri": PERMITS_LIST_URI, 0: 0}}, "status.type.key",
                 id="status-list-int-key"),
    # no idx
    pytest.param({"status_list": {"uri": PERMITS_LIST_URI}}, "status.missing.idx", id="idx-missing"),
    # a negative idx: indexes are uints
    pytest.param(status_claim(-1), "status.type.idx", id="idx-negative"),
    # idx as a text
    pytest.param(status_claim("7"), "status.type.idx", id="idx-text"),
    # idx as a float
    pytest.param(status_claim(7.0), "status.type.idx", id="idx-float"),
    # idx true: CBOR's simple value, not an int
    pytest.param(status_claim(True), "status.type.idx", id="idx-bool"),
    # no uri
    pytest.param({"status_list": {"idx": 7}}, "status.missing.uri", id="uri-missing"),
    # an empty uri names no list
    pytest.param(status_claim(7, ""), "status.type.uri", id="uri-empty"),
    # uri as bytes
    pytest.param(status_claim(7, PERMITS_LIST_URI.encode()), "status.type.uri", id="uri-bytes"),
    # idx checked before uri: both wrong, idx is reported
    pytest.param(status_claim("7", 7), "status.type.idx", id="idx-before-uri"),
]


@pytest.mark.parametrize(("status", "reason"), STATUS_CASES)
def test_malformed_status_claim(twin: ModuleType, trust: fastpath.TrustList, status: Any, reason: str) -> None:
    for profile, message, verify in (
            ("WP1", sign1(ACTIVE, claims("WP1", status=status)), lambda m: twin.verify_qr(qr(m), trust, NOW)),
            ("CARD", sign1(ACTIVE, claims("CARD", status=status)),
             lambda m: twin.verify_card_certificate(m, trust, NOW))):
        verdict = verify(message)
        assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (reason,)), profile
        # a claims failure: nothing of the claims is kept, the kid is
        assert verdict.claims is None and verdict.permit is None and verdict.status_ref is None
        assert verdict.kid == ACTIVE.kid


def test_the_permit_map_is_checked_before_the_status_claim(twin: ModuleType, trust: fastpath.TrustList) -> None:
    payload = claims("WP1", status=7, permit={**PERMIT, "cat": "D"})
    verdict = twin.verify_qr(qr(sign1(ACTIVE, payload)), trust, NOW)
    assert verdict.reasons == ("permit.type.cat",)


# --- keys of the two uses kept apart ---------------------------------------------
def test_a_status_signer_never_signs_a_permit_token(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # trusted, but for Status Lists only: UNKNOWN_KEY with its own reason, for codes and cards
    text = qr(sign1(STATUS_SIGNER, claims("WP1")))
    verdict = twin.verify_qr(text, trust, NOW)
    assert (verdict.result, verdict.reasons, verdict.kid) == (codes.UNKNOWN_KEY, (codes.R_KEY_USE,),
                                                              STATUS_SIGNER.kid)
    card = twin.verify_card_certificate(sign1(STATUS_SIGNER, claims("CARD")), trust, NOW)
    assert (card.result, card.reasons) == (codes.UNKNOWN_KEY, (codes.R_KEY_USE,))
