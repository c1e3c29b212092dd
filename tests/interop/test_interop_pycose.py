"""Interoperability with ``pycose`` (with cbor2 for the claims), a second independent
COSE stack: its Sign1 messages verify VALID on both our twins, ours verify in it.

pycose is an oracle only: it verifies a message with an unknown ``crit``
(shown at the end), which WIRE-FORMAT 2 rejects as UNSUPPORTED.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import cbor2
import pytest
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

import fastpath
from fastpath import codes
from tests.interop.qr_layer import cose_of, qr_text
from verifier.issuing import IssuerKey, SoftwareCard, mint_card_certificate, mint_es1, mint_wp1, sign_cose

NOW = 1767225600
PERMIT_CLAIM = -70001
CARD_CLAIM = -70002


def pycose_sign1(key: IssuerKey, claims: dict[int, Any], *, tag: bool = True, kid_protected: bool = True) -> bytes:
    headers = {Algorithm: EdDSA, KID: key.kid}
    if kid_protected:
        message = Sign1Message(phdr=headers, payload=cbor2.dumps(claims))
    else:
        message = Sign1Message(phdr={Algorithm: EdDSA}, uhdr={KID: key.kid}, payload=cbor2.dumps(claims))
    message.key = OKPKey(crv=Ed25519, d=key.seed, x=key.public_key)
    return message.encode(tag=tag)


def pycose_verifies(key: IssuerKey, cose: bytes) -> tuple[bool, dict[int, Any]]:
    message = Sign1Message.decode(cose)
    message.key = OKPKey(crv=Ed25519, x=key.public_key)
    return message.verify_signature(), cbor2.loads(message.payload)


# --- theirs verify with ours -----------------------------------------------------------


@pytest.mark.parametrize(("tag", "kid_protected"), [(True, True), (False, True), (True, False)],
                         ids=["tagged", "untagged", "kid-unprotected"])
def test_pycose_wp1_is_valid(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any],
    tag: bool, kid_protected: bool,
) -> None:
    claims = {1: "CN-310000", 4: NOW + 86400, 6: NOW, PERMIT_CLAIM: permit}
    cose = pycose_sign1(issuer_key, claims, tag=tag, kid_protected=kid_protected)
    assert cose.startswith(b"\xd2\x84") == tag
    verdict = twin.verify_qr(qr_text("WP1:", cose), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons, verdict.profile) == (codes.VALID, (), codes.PROFILE_WP1)
    assert verdict.permit == permit
    assert verdict.claims == {"iss": "CN-310000", "exp": NOW + 86400, "iat": NOW}


def test_pycose_es1_is_valid(twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]) -> None:
    claims = {1: "CN-310000", 4: NOW + 300, 6: NOW, 7: b"pycose-cti", PERMIT_CLAIM: permit}
    verdict = twin.verify_qr(qr_text("ES1:", pycose_sign1(issuer_key, claims)), trust, NOW, cache=False)
    assert (verdict.result, verdict.profile) == (codes.VALID, codes.PROFILE_ES1)
    assert verdict.claims["cti"] == b"pycose-cti"


def test_pycose_card_certificate_is_valid(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    card = SoftwareCard.generate()
    holder = {"cn": permit["cn"], "ssn": permit["ssn"], "pn": permit["pn"]}
    certificate = pycose_sign1(issuer_key, {1: "CN-310000", 4: NOW + 60, 6: NOW, CARD_CLAIM: {**holder, "cpk": card.public_key}})
    challenge = b"\x5a" * 32
    verdict = twin.verify_card(certificate, challenge, card.sign_challenge(challenge), trust, NOW)
    assert verdict.result == codes.VALID
    assert verdict.permit == holder


def test_pycose_message_altered_after_signing_is_bad_signature(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    cose = cbor2.loads(pycose_sign1(issuer_key, {1: "CN-310000", 4: NOW + 86400, 6: NOW, PERMIT_CLAIM: permit}))
    protected, unprotected, _, signature = cose.value
    # same signature, the permit now in category A
    forged_payload = cbor2.dumps({1: "CN-310000", 4: NOW + 86400, 6: NOW, PERMIT_CLAIM: {**permit, "cat": "A"}})
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, forged_payload, signature]))
    verdict = twin.verify_qr(qr_text("WP1:", forged), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.BAD_SIGNATURE, (codes.R_SIGNATURE_INVALID,))


# --- ours verify with theirs ---------------------------------------------------------------


def test_our_wp1_and_es1_verify_in_pycose(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    for code in (mint_wp1(issuer_key, permit, iat=NOW), mint_es1(issuer_key, permit, iat=NOW)):
        ok, claims = pycose_verifies(issuer_key, cose_of(code))
        assert ok
        assert claims[1] == "CN-310000" and claims[6] == NOW
        assert claims[PERMIT_CLAIM] == permit


def test_our_card_certificate_verifies_in_pycose(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    holder = {"cn": permit["cn"], "ssn": permit["ssn"], "pn": permit["pn"]}
    certificate = mint_card_certificate(issuer_key, holder, b"\x77" * 32, iat=NOW, exp=NOW + 60)
    ok, claims = pycose_verifies(issuer_key, certificate)
    assert ok
    assert claims[CARD_CLAIM] == {**holder, "cpk": b"\x77" * 32}


def test_pycose_refuses_our_code_under_another_key(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    ok, _ = pycose_verifies(IssuerKey.from_seed(b"\x45" * 32), cose_of(mint_wp1(issuer_key, permit, iat=NOW)))
    assert not ok


# --- where the oracle is weak and we are not ----------------------------------------------


def test_pycose_verifies_an_unknown_crit_that_we_call_unsupported(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    cose = sign_cose(issuer_key, {1: "CN-310000", 4: NOW + 60, 6: NOW, PERMIT_CLAIM: permit}, protected_extra={2: [99]})
    ok, _ = pycose_verifies(issuer_key, cose)
    assert ok  # pycose 1.1 ignores crit
    verdict = twin.verify_qr(qr_text("WP1:", cose), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.UNSUPPORTED, (codes.R_HEADER_CRIT,))
