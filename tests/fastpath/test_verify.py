"""Header, keys, signature, claims and times (WIRE-FORMAT 2-4), and card reads (6), on both twins.

Tokens are signed for real (craft.py, with PyNaCl); each case changes one thing.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

import fastpath
from fastpath import codes

from . import craft
from .craft import ACTIVE, DROP, NOW, PERMIT, REGIONAL, RETIRED, REVOKED, STRANGER, claims, enc, es1, qr, sign1, wp1

CHALLENGE = bytes(range(32))


def verdict_of(twin: ModuleType, trust: fastpath.TrustList, text: str, now: int = NOW) -> fastpath.Verdict:
    return twin.verify_qr(text, trust, now, cache=False)


def assert_verdict(verdict: fastpath.Verdict, result: str, reason: str | None = None) -> None:
    assert verdict.result == result, verdict
    assert verdict.reasons == (() if reason is None else (reason,)), verdict


# --- valid codes -----------------------------------------------------------------
def test_wp1_valid(twin: ModuleType, trust: fastpath.TrustList) -> None:
    verdict = verdict_of(twin, trust, wp1(ACTIVE))
    assert_verdict(verdict, codes.VALID)
    assert verdict.ok and verdict.profile == codes.PROFILE_WP1
    assert verdict.permit == PERMIT
    assert verdict.claims == {"iss": "CN-310000", "exp": NOW - 3600 + 3 * 365 * 86400, "iat": NOW - 3600}
    assert verdict.kid == ACTIVE.kid and verdict.card_public_key is None and not verdict.cached


def test_es1_valid(twin: ModuleType, trust: fastpath.TrustList) -> None:
    verdict = verdict_of(twin, trust, es1(ACTIVE, iat=NOW - 10))
    assert_verdict(verdict, codes.VALID)
    assert verdict.profile == codes.PROFILE_ES1
    assert verdict.claims == {"iss": "CN-310000", "exp": NOW + 50, "iat": NOW - 10, "cti": b"cti-0123456789ab"}


def test_nbf_and_cti_appear_in_the_claims(twin: ModuleType, trust: fastpath.TrustList) -> None:
    verdict = verdict_of(twin, trust, wp1(ACTIVE, nbf=NOW - 100, cti=b"12345678"))
    assert verdict.ok
    assert verdict.claims is not None
    assert (verdict.claims["nbf"], verdict.claims["cti"]) == (NOW - 100, b"12345678")


def test_unknown_claims_and_permit_keys_are_ignored(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # WIRE-FORMAT 3: unknown keys in either map are ignored, and left out of the verdict
    payload = claims("WP1", permit={**PERMIT, "photo": b"\x00" * 40, "extra": [1, {"a": None}]})
    payload[-70003] = {"unknown": "claim"}
    payload[99] = 1.5
    verdict = verdict_of(twin, trust, qr(sign1(ACTIVE, payload)))
    assert verdict.ok
    assert verdict.permit == PERMIT
    assert verdict.claims is not None and set(verdict.claims) == {"iss", "exp", "iat"}


def test_wp1_without_ssn_and_cn_is_valid(twin: ModuleType, trust: fastpath.TrustList) -> None:
    permit = {k: v for k, v in PERMIT.items() if k not in ("ssn", "cn")}
    verdict = verdict_of(twin, trust, wp1(ACTIVE, permit=permit))
    assert verdict.ok and verdict.permit == permit


def test_retired_key_still_verifies(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # WIRE-FORMAT 4: retired = no longer signs, still verifies
    assert_verdict(verdict_of(twin, trust, wp1(RETIRED)), codes.VALID)


# --- WIRE-FORMAT 2: header -------------------------------------------------------
HEADER_CASES = [
    # alg only in the unprotected map: it does not count
    pytest.param({4: ACTIVE.kid}, {1: -8}, codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="alg-unprotected-only"),
    # no alg anywhere
    pytest.param({4: ACTIVE.kid}, None, codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="alg-missing"),
    # an empty protected bstr is an empty map: no alg
    pytest.param(b"", {4: ACTIVE.kid}, codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="protected-empty"),
    # ES256 (-7) instead of EdDSA
    pytest.param({1: -7, 4: ACTIVE.kid}, None, codes.UNSUPPORTED, codes.R_HEADER_ALG_UNSUPPORTED, id="alg-es256"),
    # alg as the text "EdDSA"
    pytest.param({1: "EdDSA", 4: ACTIVE.kid}, None, codes.UNSUPPORTED, codes.R_HEADER_ALG_UNSUPPORTED,
                 id="alg-text"),
    # alg as a float -8.0
    pytest.param({1: -8.0, 4: ACTIVE.kid}, None, codes.UNSUPPORTED, codes.R_HEADER_ALG_UNSUPPORTED,
                 id="alg-float"),
    # crit in the protected map, even empty, even naming nothing we know
    pytest.param({1: -8, 2: [], 4: ACTIVE.kid}, None, codes.UNSUPPORTED, codes.R_HEADER_CRIT, id="crit-protected"),
    # crit in the unprotected map
    pytest.param({1: -8, 4: ACTIVE.kid}, {2: [4]}, codes.UNSUPPORTED, codes.R_HEADER_CRIT, id="crit-unprotected"),
    # no kid in either map
    pytest.param({1: -8}, None, codes.MALFORMED, codes.R_HEADER_KID_MISSING, id="kid-missing"),
    # a 7-byte kid
    pytest.param({1: -8, 4: ACTIVE.kid[:7]}, None, codes.MALFORMED, codes.R_HEADER_KID_INVALID, id="kid-7-bytes"),
    # a 9-byte kid
    pytest.param({1: -8, 4: ACTIVE.kid + b"\x00"}, None, codes.MALFORMED, codes.R_HEADER_KID_INVALID,
                 id="kid-9-bytes"),
    # the kid as base64url text, as in the JWK, instead of raw bytes
    pytest.param({1: -8, 4: craft.b64url(ACTIVE.kid)}, None, codes.MALFORMED, codes.R_HEADER_KID_INVALID,
                 id="kid-text"),
    # a bad kid in the protected map wins over a good one in the unprotected map
    pytest.param({1: -8, 4: ACTIVE.kid[:7]}, {4: ACTIVE.kid}, codes.MALFORMED, codes.R_HEADER_KID_INVALID,
                 id="kid-protected-precedes"),
    # an unknown kid in the protected map wins over a known one in the unprotected map
    pytest.param({1: -8, 4: STRANGER.kid}, {4: ACTIVE.kid}, codes.UNKNOWN_KEY, codes.R_KEY_UNKNOWN,
                 id="kid-protected-unknown"),
    # alg missing and crit: alg is checked first
    pytest.param({2: [], 4: ACTIVE.kid}, None, codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="order-alg-crit"),
    # crit and no kid: crit is checked first
    pytest.param({1: -8, 2: []}, None, codes.UNSUPPORTED, codes.R_HEADER_CRIT, id="order-crit-kid"),
]


@pytest.mark.parametrize(("protected", "unprotected", "result", "reason"), HEADER_CASES)
def test_header(twin: ModuleType, trust: fastpath.TrustList, protected: Any, unprotected: Any,
                result: str, reason: str) -> None:
    verdict = verdict_of(twin, trust, qr(sign1(ACTIVE, protected=protected, unprotected=unprotected)))
    assert_verdict(verdict, result, reason)
    assert verdict.claims is None and verdict.permit is None


def test_kid_only_in_the_unprotected_map_is_accepted(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # WIRE-FORMAT 2: where the protected map has no kid, the unprotected one may give it
    verdict = verdict_of(twin, trust, qr(sign1(ACTIVE, protected={1: -8}, unprotected={4: ACTIVE.kid})))
    assert_verdict(verdict, codes.VALID)
    assert verdict.kid == ACTIVE.kid


# --- keys and signature -----------------------------------------------------------
def test_unknown_key(twin: ModuleType, trust: fastpath.TrustList) -> None:
    verdict = verdict_of(twin, trust, wp1(STRANGER))
    assert_verdict(verdict, codes.UNKNOWN_KEY, codes.R_KEY_UNKNOWN)
    assert verdict.kid == STRANGER.kid and verdict.claims is None


def test_revoked_key(twin: ModuleType, trust: fastpath.TrustList) -> None:
    assert_verdict(verdict_of(twin, trust, wp1(REVOKED)), codes.KEY_REVOKED, codes.R_KEY_REVOKED)


def test_revoked_key_is_reported_before_a_bad_signature(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = qr(sign1(REVOKED, signature=bytes(64)))
    assert_verdict(verdict_of(twin, trust, text), codes.KEY_REVOKED, codes.R_KEY_REVOKED)


def test_signature_by_another_key(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # the kid of the active key, signed by a stranger
    text = qr(sign1(ACTIVE, signer=STRANGER))
    assert_verdict(verdict_of(twin, trust, text), codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID)


def test_signature_with_one_bit_flipped(twin: ModuleType, trust: fastpath.TrustList) -> None:
    good = sign1(ACTIVE)
    signature = bytearray(good[-64:])
    signature[10] ^= 0x01
    text = qr(good[:-64] + bytes(signature))
    assert_verdict(verdict_of(twin, trust, text), codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID)


def test_payload_changed_after_signing(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # same length: the permit number's last digit changed
    good = sign1(ACTIVE)
    tampered = good.replace(b"WP3100002025000123", b"WP3100002025000124")
    assert tampered != good
    assert_verdict(verdict_of(twin, trust, qr(tampered)), codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID)


def test_unprotected_header_is_outside_the_signature(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # moving the kid between maps changes what is signed: protected is part of Sig_structure
    good = sign1(ACTIVE)
    protected = enc({1: -8, 4: ACTIVE.kid})
    moved = sign1(ACTIVE, protected={1: -8}, unprotected={4: ACTIVE.kid}, signature=good[-64:])
    assert protected in good
    assert_verdict(verdict_of(twin, trust, qr(moved)), codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID)


def test_all_zero_signature(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = qr(sign1(ACTIVE, signature=bytes(64)))
    assert_verdict(verdict_of(twin, trust, text), codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID)


def test_signature_is_checked_before_the_claims(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # bad claims under a bad signature: BAD_SIGNATURE, the claims are not looked at
    text = qr(sign1(ACTIVE, claims("WP1", iss=DROP), signature=bytes(64)))
    assert_verdict(verdict_of(twin, trust, text), codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID)


def test_issuer_not_allowed_for_the_key(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # the active key may sign for CN-310000 and CN-110000, not for Guangdong
    verdict = verdict_of(twin, trust, wp1(ACTIVE, iss="CN-440000"))
    assert_verdict(verdict, codes.UNKNOWN_KEY, codes.R_KEY_ISSUER)
    assert verdict.claims is not None and verdict.claims["iss"] == "CN-440000"
    assert verdict.permit == PERMIT


def test_regional_key_signs_only_for_its_region(twin: ModuleType, trust: fastpath.TrustList) -> None:
    assert_verdict(verdict_of(twin, trust, wp1(REGIONAL, iss="CN-440000")), codes.VALID)
    assert_verdict(verdict_of(twin, trust, wp1(REGIONAL)), codes.UNKNOWN_KEY, codes.R_KEY_ISSUER)


def test_issuer_is_checked_before_the_times(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = wp1(ACTIVE, iss="CN-440000", iat=NOW - 1000, exp=NOW - 500)
    assert_verdict(verdict_of(twin, trust, text), codes.UNKNOWN_KEY, codes.R_KEY_ISSUER)


# --- WIRE-FORMAT 3: claims ---------------------------------------------------------
def claims_case(name: str, payload: dict[Any, Any] | bytes, reason: str, profile: str = "WP1") -> Any:
    return pytest.param(payload, profile, reason, id=name)


def permit_without(key: str) -> dict[str, Any]:
    return {k: v for k, v in PERMIT.items() if k != key}


CLAIMS_CASES = [
    # the payload is an array, not a map
    claims_case("payload-array", enc([1, 2, 3]), codes.R_CLAIMS_NOT_MAP),
    # the payload is a bare text
    claims_case("payload-text", enc("claims"), codes.R_CLAIMS_NOT_MAP),
    # the payload is empty (signed, but no CBOR at all)
    claims_case("payload-empty", b"", codes.R_CBOR_TRUNCATED),
    # the payload map repeats exp
    claims_case("payload-duplicate", craft.raw_map([(enc(1), enc("CN-310000")), (enc(4), enc(NOW)),
                                                    (enc(4), enc(NOW))]), codes.R_CBOR_DUPLICATE_KEY),
    # the payload with a byte after the map
    claims_case("payload-trailing", enc(claims("WP1")) + b"\x00", codes.R_CBOR_TRAILING),
    # each required claim missing
    claims_case("iss-missing", claims("WP1", iss=DROP), "claims.missing.iss"),
    claims_case("exp-missing", claims("WP1", exp=DROP), "claims.missing.exp"),
    claims_case("iat-missing", claims("WP1", iat=DROP), "claims.missing.iat"),
    claims_case("es1-cti-missing", claims("ES1", cti=DROP), "claims.missing.cti", "ES1"),
    claims_case("permit-missing", {1: "CN-310000", 4: NOW + 60, 6: NOW}, "claims.missing.permit"),
    # each claim of the wrong type
    claims_case("iss-int", claims("WP1", iss=310000), "claims.type.iss"),
    claims_case("iss-empty", claims("WP1", iss=""), "claims.type.iss"),
    claims_case("iss-bytes", claims("WP1", iss=b"CN-310000"), "claims.type.iss"),
    claims_case("exp-text", claims("WP1", exp=str(NOW + 3600)), "claims.type.exp"),
    claims_case("exp-float", claims("WP1", exp=float(NOW + 3600)), "claims.type.exp"),
    claims_case("exp-bool", claims("WP1", exp=True), "claims.type.exp"),
    claims_case("exp-null", {**claims("WP1"), 4: None}, "claims.type.exp"),
    claims_case("nbf-text", claims("WP1", nbf="0"), "claims.type.nbf"),
    claims_case("iat-float", claims("WP1", iat=1.5e9, exp=NOW + 3600), "claims.type.iat"),
    claims_case("cti-7-bytes", claims("WP1", cti=b"1234567"), "claims.type.cti"),
    claims_case("cti-33-bytes", claims("WP1", cti=bytes(33)), "claims.type.cti"),
    claims_case("cti-text", claims("ES1", cti="cti-0123456789ab"), "claims.type.cti", "ES1"),
    claims_case("permit-array", {**claims("WP1"), -70001: [PERMIT]}, "claims.type.permit"),
    claims_case("permit-bstr", {**claims("WP1"), -70001: enc(PERMIT)}, "claims.type.permit"),
    # a permit map with an integer key
    claims_case("permit-int-key", claims("WP1", permit={**PERMIT, 1: "x"}), "permit.type.key"),
    # each required permit field missing
    *[claims_case(f"permit-{k}-missing", claims("WP1", permit=permit_without(k)), f"permit.missing.{k}")
      for k in ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v")],
    # ssn and cn are required in ES1
    claims_case("es1-ssn-missing", claims("ES1", permit=permit_without("ssn")), "permit.missing.ssn", "ES1"),
    claims_case("es1-cn-missing", claims("ES1", permit=permit_without("cn")), "permit.missing.cn", "ES1"),
    # each permit field of the wrong type or form
    claims_case("pn-empty", claims("WP1", permit={**PERMIT, "pn": ""}), "permit.type.pn"),
    claims_case("pn-int", claims("WP1", permit={**PERMIT, "pn": 3100002025000123}), "permit.type.pn"),
    claims_case("n-empty", claims("WP1", permit={**PERMIT, "n": ""}), "permit.type.n"),
    claims_case("nat-lower", claims("WP1", permit={**PERMIT, "nat": "can"}), "permit.type.nat"),
    claims_case("nat-alpha2", claims("WP1", permit={**PERMIT, "nat": "CA"}), "permit.type.nat"),
    claims_case("nat-4", claims("WP1", permit={**PERMIT, "nat": "CANA"}), "permit.type.nat"),
    claims_case("nat-newline", claims("WP1", permit={**PERMIT, "nat": "CAN\n"}), "permit.type.nat"),
    claims_case("dob-feb-30", claims("WP1", permit={**PERMIT, "dob": "1988-02-30"}), "permit.type.dob"),
    claims_case("dob-not-leap", claims("WP1", permit={**PERMIT, "dob": "1989-02-29"}), "permit.type.dob"),
    claims_case("dob-1900-02-29", claims("WP1", permit={**PERMIT, "dob": "1900-02-29"}), "permit.type.dob"),
    claims_case("dob-two-digit-year", claims("WP1", permit={**PERMIT, "dob": "88-02-29"}), "permit.type.dob"),
    claims_case("dob-slashes", claims("WP1", permit={**PERMIT, "dob": "1988/02/29"}), "permit.type.dob"),
    claims_case("dob-month-13", claims("WP1", permit={**PERMIT, "dob": "1988-13-01"}), "permit.type.dob"),
    claims_case("dob-year-0", claims("WP1", permit={**PERMIT, "dob": "0000-01-01"}), "permit.type.dob"),
    claims_case("dob-fullwidth-digits", claims("WP1", permit={**PERMIT, "dob": "１９８８-02-29"}),
                "permit.type.dob"),
    claims_case("dob-with-time", claims("WP1", permit={**PERMIT, "dob": "1988-02-29T00:00"}), "permit.type.dob"),
    claims_case("dob-int", claims("WP1", permit={**PERMIT, "dob": 19880229}), "permit.type.dob"),
    claims_case("cat-d", claims("WP1", permit={**PERMIT, "cat": "D"}), "permit.type.cat"),
    claims_case("cat-lower", claims("WP1", permit={**PERMIT, "cat": "b"}), "permit.type.cat"),
    claims_case("emp-17", claims("WP1", permit={**PERMIT, "emp": PERMIT["emp"][:17]}), "permit.type.emp"),
    claims_case("emp-19", claims("WP1", permit={**PERMIT, "emp": PERMIT["emp"] + "0"}), "permit.type.emp"),
    claims_case("emp-lower", claims("WP1", permit={**PERMIT, "emp": PERMIT["emp"].lower()}), "permit.type.emp"),
    claims_case("vf-invalid", claims("WP1", permit={**PERMIT, "vf": "2025-02-29"}), "permit.type.vf"),
    claims_case("vt-invalid", claims("WP1", permit={**PERMIT, "vt": "2027-04-31"}), "permit.type.vt"),
    claims_case("vt-before-vf", claims("WP1", permit={**PERMIT, "vt": "2025-02-28"}), "permit.type.vt"),
    claims_case("v-negative", claims("WP1", permit={**PERMIT, "v": -1}), "permit.type.v"),
    claims_case("v-text", claims("WP1", permit={**PERMIT, "v": "3"}), "permit.type.v"),
    claims_case("v-bool", claims("WP1", permit={**PERMIT, "v": True}), "permit.type.v"),
    claims_case("v-float", claims("WP1", permit={**PERMIT, "v": 3.0}), "permit.type.v"),
    claims_case("ssn-empty", claims("WP1", permit={**PERMIT, "ssn": ""}), "permit.type.ssn"),
    claims_case("cn-int", claims("WP1", permit={**PERMIT, "cn": 12345678}), "permit.type.cn"),
    # the order is fixed: iss before exp, exp before nbf, nbf before iat, iat before cti
    claims_case("order-iss-exp", claims("WP1", iss=DROP, exp=DROP), "claims.missing.iss"),
    claims_case("order-nbf-iat", claims("WP1", nbf="x", iat=DROP), "claims.type.nbf"),
    claims_case("order-iat-cti", claims("ES1", iat=DROP, cti=DROP), "claims.missing.iat", "ES1"),
    claims_case("order-cti-permit", {**claims("WP1", cti=b"x"), -70001: None}, "claims.type.cti"),
    # then the permit map in the table's order: pn, n, nat, dob, cat, emp, vf, vt, v, ssn, cn
    claims_case("order-pn-n", claims("WP1", permit={**PERMIT, "pn": "", "n": ""}), "permit.type.pn"),
    claims_case("order-cat-dob", claims("WP1", permit={**PERMIT, "cat": "X", "dob": "x"}), "permit.type.dob"),
    claims_case("order-cn-v", claims("WP1", permit={**PERMIT, "cn": "", "v": -1}), "permit.type.v"),
    claims_case("order-key-before-fields", claims("WP1", permit={**PERMIT, "pn": "", 7: 7}), "permit.type.key"),
]


@pytest.mark.parametrize(("payload", "profile", "reason"), CLAIMS_CASES)
def test_claims(twin: ModuleType, trust: fastpath.TrustList, payload: Any, profile: str, reason: str) -> None:
    text = qr(sign1(ACTIVE, payload), f"{profile}:")
    verdict = verdict_of(twin, trust, text)
    assert_verdict(verdict, codes.MALFORMED, reason)
    assert verdict.claims is None and verdict.permit is None
    assert verdict.kid == ACTIVE.kid and verdict.profile == profile


def test_ssn_and_cn_are_checked_when_present_in_wp1(twin: ModuleType, trust: fastpath.TrustList) -> None:
    assert_verdict(verdict_of(twin, trust, wp1(ACTIVE, permit={**PERMIT, "cn": ""})), codes.MALFORMED,
                   "permit.type.cn")


@pytest.mark.parametrize("cti", [bytes(8), bytes(32)], ids=["8", "32"])
def test_cti_length_bounds_are_inclusive(twin: ModuleType, trust: fastpath.TrustList, cti: bytes) -> None:
    assert_verdict(verdict_of(twin, trust, es1(ACTIVE, cti=cti, iat=NOW)), codes.VALID)


def test_large_integer_claims(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # the largest CBOR unsigned exp is still an int; v as large as CBOR allows is a uint
    text = wp1(ACTIVE, exp=2**64 - 1, permit={**PERMIT, "v": 2**64 - 1})
    verdict = verdict_of(twin, trust, text)
    assert_verdict(verdict, codes.VALID)
    assert verdict.claims is not None and verdict.claims["exp"] == 2**64 - 1
    assert verdict.permit is not None and verdict.permit["v"] == 2**64 - 1


def test_negative_times_are_ints_too(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # the smallest CBOR negative as iat: a well-typed claim, so only the times decide (valid here)
    verdict = verdict_of(twin, trust, wp1(ACTIVE, iat=-(2**64), nbf=-(2**64), exp=NOW + 3600))
    assert_verdict(verdict, codes.VALID)


# --- WIRE-FORMAT 3: times ------------------------------------------------------------
def test_expired_at_the_leeway_boundary(twin: ModuleType, trust: fastpath.TrustList) -> None:
    exp = NOW
    text = wp1(ACTIVE, iat=NOW - 3600, exp=exp)
    # now - 60 == exp: EXPIRED
    assert_verdict(verdict_of(twin, trust, text, now=exp + 60), codes.EXPIRED, codes.R_TIME_EXPIRED)
    # now - 59 == exp: still inside the leeway
    assert_verdict(verdict_of(twin, trust, text, now=exp + 59), codes.VALID)


def test_expired_keeps_claims_and_permit(twin: ModuleType, trust: fastpath.TrustList) -> None:
    verdict = verdict_of(twin, trust, wp1(ACTIVE, iat=NOW - 3600, exp=NOW - 1000))
    assert_verdict(verdict, codes.EXPIRED, codes.R_TIME_EXPIRED)
    assert verdict.claims is not None and verdict.claims["exp"] == NOW - 1000
    assert verdict.permit == PERMIT


def test_not_yet_valid_by_iat_at_the_leeway_boundary(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # now + 60 < iat: NOT_YET_VALID; now + 60 == iat: valid
    assert_verdict(verdict_of(twin, trust, wp1(ACTIVE, iat=NOW + 61, exp=NOW + 9999)), codes.NOT_YET_VALID,
                   codes.R_TIME_NOT_YET_VALID)
    assert_verdict(verdict_of(twin, trust, wp1(ACTIVE, iat=NOW + 60, exp=NOW + 9999)), codes.VALID)


def test_not_yet_valid_by_nbf_at_the_leeway_boundary(twin: ModuleType, trust: fastpath.TrustList) -> None:
    assert_verdict(verdict_of(twin, trust, wp1(ACTIVE, nbf=NOW + 61)), codes.NOT_YET_VALID,
                   codes.R_TIME_NOT_YET_VALID)
    assert_verdict(verdict_of(twin, trust, wp1(ACTIVE, nbf=NOW + 60)), codes.VALID)


def test_not_yet_valid_comes_before_expired(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # nbf in the future and exp in the past: NOT_YET_VALID is checked first
    text = wp1(ACTIVE, iat=NOW - 7200, nbf=NOW + 3600, exp=NOW - 3600)
    assert_verdict(verdict_of(twin, trust, text), codes.NOT_YET_VALID, codes.R_TIME_NOT_YET_VALID)


def test_es1_lifetime_bound(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # exp - iat = 301: longer than an ES1 code may live
    assert_verdict(verdict_of(twin, trust, es1(ACTIVE, iat=NOW, exp=NOW + 301)), codes.MALFORMED,
                   codes.R_TIME_LIFETIME)
    assert_verdict(verdict_of(twin, trust, es1(ACTIVE, iat=NOW, exp=NOW + 300)), codes.VALID)


def test_lifetime_is_checked_before_not_yet_valid(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = es1(ACTIVE, iat=NOW + 1000, exp=NOW + 2000)
    assert_verdict(verdict_of(twin, trust, text), codes.MALFORMED, codes.R_TIME_LIFETIME)


@pytest.mark.parametrize("profile", ["WP1", "ES1"])
@pytest.mark.parametrize("delta", [0, -1], ids=["exp=iat", "exp<iat"])
def test_exp_not_after_iat(twin: ModuleType, trust: fastpath.TrustList, profile: str, delta: int) -> None:
    text = qr(sign1(ACTIVE, claims(profile, iat=NOW, exp=NOW + delta)), f"{profile}:")
    assert_verdict(verdict_of(twin, trust, text), codes.MALFORMED, codes.R_TIME_LIFETIME)


def test_now_defaults_to_the_clock(twin: ModuleType, trust: fastpath.TrustList) -> None:
    import time

    real_now = int(time.time())
    assert twin.verify_qr(wp1(ACTIVE, iat=real_now - 100, exp=real_now + 86400), trust).result == codes.VALID
    assert twin.verify_qr(wp1(ACTIVE, iat=real_now - 100, exp=real_now - 61), trust).result == codes.EXPIRED


# --- WIRE-FORMAT 6: card reads -------------------------------------------------------
def card_certificate(issuer: craft.Issuer = ACTIVE, **claim_overrides: Any) -> bytes:
    return sign1(issuer, claims("CARD", **claim_overrides))


def card_claims_with(**card: Any) -> dict[int, Any]:
    payload = claims("CARD")
    payload[-70002] = {k: v for k, v in {**payload[-70002], **card}.items() if v is not DROP}
    return payload


def test_card_valid(twin: ModuleType, trust: fastpath.TrustList) -> None:
    verdict = twin.verify_card(card_certificate(), CHALLENGE, craft.card_sign(CHALLENGE), trust, NOW)
    assert_verdict(verdict, codes.VALID)
    assert verdict.profile == codes.PROFILE_CARD and verdict.kid == ACTIVE.kid
    assert verdict.permit == {"cn": PERMIT["cn"], "ssn": PERMIT["ssn"], "pn": PERMIT["pn"]}
    assert verdict.card_public_key == bytes(craft.card_key().verify_key)
    assert verdict.claims == {"iss": "CN-310000", "exp": NOW - 3600 + 3 * 365 * 86400, "iat": NOW - 3600}


def test_card_certificate_untagged_with_cti(twin: ModuleType, trust: fastpath.TrustList) -> None:
    certificate = sign1(ACTIVE, claims("CARD", cti=bytes(16)), tag=False)
    assert_verdict(twin.verify_card_certificate(certificate, trust, NOW), codes.VALID)


@pytest.mark.parametrize(("challenge", "signature", "result", "reason"), [
    # a 31-byte challenge
    pytest.param(CHALLENGE[:31], craft.card_sign(CHALLENGE[:31]), codes.CHALLENGE_INVALID, codes.R_CARD_CHALLENGE,
                 id="challenge-31"),
    # no challenge
    pytest.param(b"", craft.card_sign(b""), codes.CHALLENGE_INVALID, codes.R_CARD_CHALLENGE, id="challenge-empty"),
    # the challenge as text
    pytest.param(CHALLENGE.hex()[:32], craft.card_sign(CHALLENGE), codes.CHALLENGE_INVALID, codes.R_CARD_CHALLENGE,
                 id="challenge-str"),
    # a 63-byte card signature
    pytest.param(CHALLENGE, craft.card_sign(CHALLENGE)[:63], codes.MALFORMED, codes.R_CARD_SIGNATURE_LENGTH,
                 id="signature-63"),
    # the card signature as None
    pytest.param(CHALLENGE, None, codes.MALFORMED, codes.R_CARD_SIGNATURE_LENGTH, id="signature-none"),
    # the card signed another challenge
    pytest.param(CHALLENGE, craft.card_sign(bytes(32)), codes.BAD_SIGNATURE, codes.R_CARD_SIGNATURE,
                 id="other-challenge"),
    # the card signed the challenge without the domain tag
    pytest.param(CHALLENGE, craft.card_sign(CHALLENGE, domain=b""), codes.BAD_SIGNATURE, codes.R_CARD_SIGNATURE,
                 id="no-domain-tag"),
    # another card's key signed it
    pytest.param(CHALLENGE, craft.card_sign(CHALLENGE, key=STRANGER.signing_key), codes.BAD_SIGNATURE,
                 codes.R_CARD_SIGNATURE, id="other-card"),
])
def test_card_signature(twin: ModuleType, trust: fastpath.TrustList, challenge: Any, signature: Any,
                        result: str, reason: str) -> None:
    verdict = twin.verify_card(card_certificate(), challenge, signature, trust, NOW)
    assert_verdict(verdict, result, reason)
    # the certificate held: its claims stay in the verdict
    assert verdict.permit is not None and verdict.card_public_key is not None


CARD_CERTIFICATE_CASES = [
    # the card map missing
    pytest.param(sign1(ACTIVE, claims("WP1")), codes.MALFORMED, "claims.missing.card", id="no-card-map"),
    # the card map as an array
    pytest.param(sign1(ACTIVE, {**claims("CARD"), -70002: []}), codes.MALFORMED, "claims.type.card",
                 id="card-map-array"),
    # an integer key in the card map
    pytest.param(sign1(ACTIVE, card_claims_with(**{"cn": PERMIT["cn"]}) | {-70002: {1: 1}}), codes.MALFORMED,
                 "card.type.key", id="card-int-key"),
    # each card field missing
    *[pytest.param(sign1(ACTIVE, card_claims_with(**{k: DROP})), codes.MALFORMED, f"card.missing.{k}",
                   id=f"card-{k}-missing") for k in ("cn", "ssn", "pn", "cpk")],
    # each card field of the wrong type
    pytest.param(sign1(ACTIVE, card_claims_with(cn="")), codes.MALFORMED, "card.type.cn", id="cn-empty"),
    pytest.param(sign1(ACTIVE, card_claims_with(ssn=1)), codes.MALFORMED, "card.type.ssn", id="ssn-int"),
    pytest.param(sign1(ACTIVE, card_claims_with(pn=b"WP")), codes.MALFORMED, "card.type.pn", id="pn-bytes"),
    pytest.param(sign1(ACTIVE, card_claims_with(cpk=bytes(31))), codes.MALFORMED, "card.type.cpk", id="cpk-31"),
    pytest.param(sign1(ACTIVE, card_claims_with(cpk="key")), codes.MALFORMED, "card.type.cpk", id="cpk-text"),
    # the claims around it
    pytest.param(card_certificate(iss=DROP), codes.MALFORMED, "claims.missing.iss", id="iss-missing"),
    pytest.param(card_certificate(cti=b"short"), codes.MALFORMED, "claims.type.cti", id="cti-short"),
    # keys, signature, issuer, times as for QR codes
    pytest.param(card_certificate(STRANGER), codes.UNKNOWN_KEY, codes.R_KEY_UNKNOWN, id="unknown-key"),
    pytest.param(card_certificate(REVOKED), codes.KEY_REVOKED, codes.R_KEY_REVOKED, id="revoked-key"),
    pytest.param(sign1(ACTIVE, claims("CARD"), signer=STRANGER), codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID,
                 id="bad-signature"),
    pytest.param(card_certificate(iss="CN-440000"), codes.UNKNOWN_KEY, codes.R_KEY_ISSUER, id="issuer"),
    pytest.param(card_certificate(iat=NOW - 7200, exp=NOW - 60), codes.EXPIRED, codes.R_TIME_EXPIRED,
                 id="expired"),
    pytest.param(card_certificate(iat=NOW + 61), codes.NOT_YET_VALID, codes.R_TIME_NOT_YET_VALID,
                 id="not-yet-valid"),
    pytest.param(card_certificate(iat=NOW, exp=NOW), codes.MALFORMED, codes.R_TIME_LIFETIME, id="exp-is-iat"),
    # COSE structure as for QR codes
    pytest.param(card_certificate()[:-1], codes.MALFORMED, codes.R_CBOR_TRUNCATED, id="truncated"),
    pytest.param(card_certificate() + b"\x00", codes.MALFORMED, codes.R_CBOR_TRAILING, id="trailing"),
    pytest.param(enc(claims("CARD")), codes.MALFORMED, codes.R_COSE_STRUCTURE, id="plain-map"),
    pytest.param(sign1(ACTIVE, claims("CARD"), protected={1: -7, 4: ACTIVE.kid}), codes.UNSUPPORTED,
                 codes.R_HEADER_ALG_UNSUPPORTED, id="alg-es256"),
    pytest.param(b"", codes.MALFORMED, codes.R_CBOR_TRUNCATED, id="empty"),
    # a certificate longer than any message we read
    pytest.param(card_certificate() + bytes(4096), codes.MALFORMED, codes.R_CARD_TOO_LONG, id="too-long"),
    # not bytes at all
    pytest.param(card_certificate().hex(), codes.MALFORMED, codes.R_INPUT_TYPE, id="hex-text"),
    pytest.param(None, codes.MALFORMED, codes.R_INPUT_TYPE, id="none"),
]


@pytest.mark.parametrize(("certificate", "result", "reason"), CARD_CERTIFICATE_CASES)
def test_card_certificate(twin: ModuleType, trust: fastpath.TrustList, certificate: Any, result: str,
                          reason: str) -> None:
    verdict = twin.verify_card_certificate(certificate, trust, NOW)
    assert_verdict(verdict, result, reason)
    assert verdict.profile == codes.PROFILE_CARD
    # verify_card stops at the certificate, whatever the card signed
    assert_verdict(twin.verify_card(certificate, CHALLENGE, craft.card_sign(CHALLENGE), trust, NOW), result, reason)


def test_card_certificate_at_the_size_limit_is_read(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # 4096 bytes are read (and fail as CBOR trailing bytes), 4097 are refused unread
    certificate = card_certificate()
    padded = certificate + bytes(4096 - len(certificate))
    assert twin.verify_card_certificate(padded, trust, NOW).reasons == (codes.R_CBOR_TRAILING,)
    assert twin.verify_card_certificate(padded + b"\x00", trust, NOW).reasons == (codes.R_CARD_TOO_LONG,)


def test_check_card_signature(twin: ModuleType) -> None:
    public_key = bytes(craft.card_key().verify_key)
    good = craft.card_sign(CHALLENGE)
    assert twin.check_card_signature(public_key, CHALLENGE, good) is None
    assert twin.check_card_signature(public_key, CHALLENGE[:31], good) == codes.R_CARD_CHALLENGE
    assert twin.check_card_signature(public_key, CHALLENGE, good[:63]) == codes.R_CARD_SIGNATURE_LENGTH
    assert twin.check_card_signature(public_key, CHALLENGE, bytes(64)) == codes.R_CARD_SIGNATURE
    assert twin.check_card_signature(public_key[:31], CHALLENGE, good) == codes.R_CARD_SIGNATURE
    assert twin.check_card_signature(STRANGER.public_key, CHALLENGE, good) == codes.R_CARD_SIGNATURE


# --- every result code of WIRE-FORMAT 1-4 and 6 ---------------------------------------
def _qr_case(text: str) -> Any:
    return lambda twin, trust: twin.verify_qr(text, trust, NOW)


RESULT_CASES = {
    codes.VALID: _qr_case(wp1(ACTIVE)),
    codes.MALFORMED: _qr_case("WP1:GGW"),
    codes.UNSUPPORTED: _qr_case("HC1:" + wp1(ACTIVE)[4:]),
    codes.UNKNOWN_KEY: _qr_case(wp1(STRANGER)),
    codes.KEY_REVOKED: _qr_case(wp1(REVOKED)),
    codes.BAD_SIGNATURE: _qr_case(qr(sign1(ACTIVE, signer=STRANGER))),
    codes.NOT_YET_VALID: _qr_case(wp1(ACTIVE, iat=NOW + 3600, exp=NOW + 7200)),
    codes.EXPIRED: _qr_case(wp1(ACTIVE, iat=NOW - 7200, exp=NOW - 3600)),
    codes.CHALLENGE_INVALID: lambda twin, trust: twin.verify_card(card_certificate(), CHALLENGE[:16],
                                                                  craft.card_sign(CHALLENGE), trust, NOW),
}


def test_result_cases_cover_the_fastpath_codes() -> None:
    # sections 1-4 and 6; the rest (section 5, status) are the service's
    assert set(RESULT_CASES) == {codes.VALID, codes.MALFORMED, codes.UNSUPPORTED, codes.UNKNOWN_KEY,
                                 codes.KEY_REVOKED, codes.BAD_SIGNATURE, codes.NOT_YET_VALID, codes.EXPIRED,
                                 codes.CHALLENGE_INVALID}


@pytest.mark.parametrize("result", list(RESULT_CASES))
def test_every_result_code(twin: ModuleType, trust: fastpath.TrustList, result: str) -> None:
    assert RESULT_CASES[result](twin, trust).result == result


def test_wrong_trust_type_is_a_programming_error(twin: ModuleType) -> None:
    with pytest.raises(TypeError):
        twin.verify_qr(wp1(ACTIVE), craft.trust_list_json(), NOW)
