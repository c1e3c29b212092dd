"""Interoperability with the ``cwt`` library (3.3.0), an independent COSE/CWT stack.

Codes signed by cwt verify VALID on both our twins, and codes we mint decode
and verify in cwt. cwt is an oracle only, never a verifier in the product:
its ``decode()`` accepts a plain unsigned CBOR map, a missing ``alg`` and an
unknown ``crit``, all of which we reject (the last tests here show it).

WIRE-FORMAT 4: ``COSEKey.from_jwk`` takes the JWK's ``kid`` *text* as the key
id; the COSE header must carry the 8 raw bytes, so the keys here are built from
the raw kid with ``COSEKey.new``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import cbor2
import cwt
import pytest
from cwt import COSEKey

import fastpath
from fastpath import codes
from tests.interop.qr_layer import cose_of, qr_text
from verifier.issuing import (
    OMIT,
    IssuerKey,
    SoftwareCard,
    mint_card_certificate,
    mint_es1,
    mint_wp1,
    sign_cose,
)

NOW = 1767225600
PERMIT_CLAIM = -70001
CARD_CLAIM = -70002
# COSE key parameters (RFC 9053): kty OKP, crv Ed25519, alg EdDSA
KTY, KID, ALG, CRV, X, D = 1, 2, 3, -1, -2, -4
OKP, ED25519, EDDSA = 1, 6, -8


def cwt_signing_key(key: IssuerKey) -> Any:
    return COSEKey.new({KTY: OKP, CRV: ED25519, X: key.public_key, D: key.seed, KID: key.kid, ALG: EDDSA})


def cwt_verifying_key(key: IssuerKey) -> Any:
    return COSEKey.new({KTY: OKP, CRV: ED25519, X: key.public_key, KID: key.kid, ALG: EDDSA})


def wp1_claims(permit: dict[str, Any]) -> dict[int, Any]:
    # an explicit nbf: cwt.encode would otherwise add one from the real clock
    return {1: "CN-310000", 4: NOW + 86400, 5: NOW - 60, 6: NOW - 60, PERMIT_CLAIM: permit}


# --- theirs verify with ours -----------------------------------------------------------


def test_cwt_encode_wp1_is_valid(twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]) -> None:
    cose = cwt.encode(wp1_claims(permit), cwt_signing_key(issuer_key))
    # cwt puts the kid in the unprotected header: WIRE-FORMAT 2 allows it when the protected one has none
    assert cbor2.loads(cbor2.loads(cose).value[0]) == {1: EDDSA}
    verdict = twin.verify_qr(qr_text("WP1:", cose), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons, verdict.profile) == (codes.VALID, (), codes.PROFILE_WP1)
    assert verdict.permit == permit
    assert verdict.kid == issuer_key.kid
    assert verdict.claims == {"iss": "CN-310000", "exp": NOW + 86400, "nbf": NOW - 60, "iat": NOW - 60}


def test_cwt_sign1_with_kid_protected_is_valid(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    cose = cwt.COSE.new().encode_and_sign(
        cbor2.dumps(wp1_claims(permit)), cwt_signing_key(issuer_key),
        protected={1: EDDSA, 4: issuer_key.kid}, unprotected={},
    )
    assert cbor2.loads(cbor2.loads(cose).value[0]) == {1: EDDSA, 4: issuer_key.kid}
    verdict = twin.verify_qr(qr_text("WP1:", cose), trust, NOW, cache=False)
    assert verdict.result == codes.VALID
    assert verdict.permit == permit


def test_cwt_encode_es1_is_valid(twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]) -> None:
    claims = {1: "CN-110000", 4: NOW + 60, 5: NOW, 6: NOW, 7: b"cwt-minted-cti-1", PERMIT_CLAIM: permit}
    cose = cwt.encode(claims, cwt_signing_key(issuer_key))
    verdict = twin.verify_qr(qr_text("ES1:", cose), trust, NOW, cache=False)
    assert (verdict.result, verdict.profile) == (codes.VALID, codes.PROFILE_ES1)
    assert verdict.claims["cti"] == b"cwt-minted-cti-1"
    assert verdict.permit == permit


def test_cwt_card_certificate_is_valid(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    card = SoftwareCard.generate()
    holder = {"cn": permit["cn"], "ssn": permit["ssn"], "pn": permit["pn"]}
    claims = {1: "CN-310000", 4: NOW + 86400, 5: NOW, 6: NOW, CARD_CLAIM: {**holder, "cpk": card.public_key}}
    certificate = cwt.encode(claims, cwt_signing_key(issuer_key))
    challenge = bytes(range(32))
    verdict = twin.verify_card(certificate, challenge, card.sign_challenge(challenge), trust, NOW)
    assert (verdict.result, verdict.profile) == (codes.VALID, codes.PROFILE_CARD)
    assert verdict.permit == holder and verdict.card_public_key == card.public_key


def test_cwt_signed_with_a_key_we_do_not_trust_is_unknown_key(
    twin: ModuleType, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    stranger = IssuerKey.from_seed(b"\xee" * 32)
    cose = cwt.encode(wp1_claims(permit), cwt_signing_key(stranger))
    assert twin.verify_qr(qr_text("WP1:", cose), trust, NOW, cache=False).result == codes.UNKNOWN_KEY


def test_cwt_key_from_jwk_carries_the_kid_text_which_we_refuse(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    # our key file is a private JWK: cwt loads it, but takes the kid's base64url text as the kid
    jwk = issuer_key.to_private_jwk()
    key = COSEKey.from_jwk({name: jwk[name] for name in ("kty", "crv", "x", "d", "kid", "alg", "use")})
    assert key.kid == issuer_key.kid_text.encode() != issuer_key.kid
    cose = cwt.encode(wp1_claims(permit), key)
    verdict = twin.verify_qr(qr_text("WP1:", cose), trust, NOW, cache=False)
    # 11 bytes of text, not the 8 raw bytes WIRE-FORMAT 2 requires
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (codes.R_HEADER_KID_INVALID,))


# --- ours verify with theirs -------------------------------------------------------------


def test_our_wp1_decodes_and_verifies_in_cwt(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    # cwt.decode checks exp against the real clock: an exp far ahead
    code = mint_wp1(issuer_key, permit, iat=NOW - 60, exp=2**32 - 1)
    claims = cwt.decode(cose_of(code), cwt_verifying_key(issuer_key))
    assert claims == {1: "CN-310000", 4: 2**32 - 1, 6: NOW - 60, PERMIT_CLAIM: permit}
    # the COSE layer alone (no claim checks), for a code with its default exp
    code = mint_wp1(issuer_key, permit, iat=NOW - 60)
    payload = cbor2.loads(cwt.COSE.new().decode(cose_of(code), cwt_verifying_key(issuer_key)))
    assert payload[PERMIT_CLAIM] == permit


def test_our_es1_verifies_in_cwt(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    code = mint_es1(issuer_key, permit, iat=NOW, cti=b"0123456789abcdef")
    payload = cbor2.loads(cwt.COSE.new().decode(cose_of(code), cwt_verifying_key(issuer_key)))
    assert payload[7] == b"0123456789abcdef"
    assert payload[4] - payload[6] == 60
    assert payload[PERMIT_CLAIM] == permit


def test_our_card_certificate_verifies_in_cwt(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    holder = {"cn": permit["cn"], "ssn": permit["ssn"], "pn": permit["pn"]}
    certificate = mint_card_certificate(issuer_key, holder, b"\x33" * 32, iat=NOW, exp=NOW + 10)
    payload = cbor2.loads(cwt.COSE.new().decode(certificate, cwt_verifying_key(issuer_key)))
    assert payload[CARD_CLAIM] == {**holder, "cpk": b"\x33" * 32}


def test_cwt_rejects_our_code_under_another_key(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    # the oracle does check a signature when there is one: a wrong key fails
    other = IssuerKey.from_seed(b"\x44" * 32)
    forged_key = COSEKey.new({KTY: OKP, CRV: ED25519, X: other.public_key, KID: issuer_key.kid, ALG: EDDSA})
    with pytest.raises(cwt.VerifyError):
        cwt.COSE.new().decode(cose_of(mint_wp1(issuer_key, permit, iat=NOW)), forged_key)


# --- where the oracle is weak and we are not ----------------------------------------------


def test_cwt_decode_accepts_an_unsigned_map_that_we_call_malformed(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    # a plain CBOR claims map, no COSE at all, no signature
    unsigned = cbor2.dumps({1: "CN-310000", 4: 2**32 - 1, 6: NOW, PERMIT_CLAIM: permit})
    assert cwt.decode(unsigned, cwt_verifying_key(issuer_key))[PERMIT_CLAIM] == permit  # cwt 3.3.0 says fine
    verdict = twin.verify_qr(qr_text("WP1:", unsigned), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (codes.R_COSE_STRUCTURE,))


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ({"protected_extra": {1: OMIT}}, codes.R_HEADER_ALG_MISSING),
        ({"protected_extra": {2: [99]}}, codes.R_HEADER_CRIT),
        ({"unprotected": {2: [99]}}, codes.R_HEADER_CRIT),
    ],
    ids=["alg-missing", "crit-protected", "crit-unprotected"],
)
def test_cwt_accepts_headers_that_we_call_unsupported(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any],
    variant: dict[str, Any], reason: str,
) -> None:
    cose = sign_cose(issuer_key, {1: "CN-310000", 4: 2**32 - 1, 6: NOW, PERMIT_CLAIM: permit}, **variant)
    assert cwt.decode(cose, cwt_verifying_key(issuer_key))[PERMIT_CLAIM] == permit
    verdict = twin.verify_qr(qr_text("WP1:", cose), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.UNSUPPORTED, (reason,))
