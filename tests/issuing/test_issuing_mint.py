"""Minted WP1/ES1 codes and card certificates verify as VALID on both fastpath twins,
and each lower layer (base45, zlib, COSE) produces what WIRE-FORMAT 1-3 and 6 say."""

from __future__ import annotations

import datetime as dt
import zlib
from types import ModuleType
from typing import Any

import cbor2
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpath
from fastpath import codes
from verifier.index.records import Card, PermitRecord
from verifier.issuing import (
    OMIT,
    IssuerKey,
    MintError,
    SoftwareCard,
    base45_encode,
    encode_qr,
    mint_card_certificate,
    mint_es1,
    mint_wp1,
    sign_cose,
)
from verifier.issuing.mint import PERMIT_CLAIM, end_of_day, permit_map

NOW = 1767225600
BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def base45_decode(text: str) -> bytes:
    """A test-local RFC 9285 decoder (no checks: it only reads what we wrote)."""
    values = [BASE45_ALPHABET.index(c) for c in text]
    out = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i:i + 3]
        n = sum(v * 45**k for k, v in enumerate(chunk))
        out += n.to_bytes(2 if len(chunk) == 3 else 1, "big")
    return bytes(out)


def cose_of(code: str) -> Any:
    """The decoded COSE_Sign1 of a QR text (cbor2 as the oracle)."""
    return cbor2.loads(zlib.decompress(base45_decode(code.split(":", 1)[1])))


# --- the encodings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    # RFC 9285 section 4.3 and 4.4
    [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
     (b"ietf!", "QED8WEX0"), (b"", ""), (b"\x00", "00"), (b"\xff\xff", "FGW")],
)
def test_base45_rfc9285_examples(data: bytes, text: str) -> None:
    assert base45_encode(data) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_base45_round_trip(data: bytes) -> None:
    text = base45_encode(data)
    assert set(text) <= set(BASE45_ALPHABET)
    assert len(text) == len(data) // 2 * 3 + len(data) % 2 * 2
    assert base45_decode(text) == data


def test_encode_qr_is_prefix_base45_of_zlib_level_9() -> None:
    message = b"\xd2\x84" + b"x" * 100
    text = encode_qr("WP1", message)
    assert text.startswith("WP1:")
    compressed = base45_decode(text[4:])
    assert compressed[:2] == b"\x78\xda"  # RFC 1950 header of level 9
    assert zlib.decompress(compressed) == message
    assert encode_qr("ES1:", message).startswith("ES1:") and not encode_qr("ES1:", message).startswith("ES1::")


def test_end_of_day_is_midnight_china_standard_time() -> None:
    # 2027-02-28 ends at 2027-03-01T00:00+08:00 = 2027-02-28T16:00Z
    expected = dt.datetime(2027, 2, 28, 16, 0, tzinfo=dt.timezone.utc).timestamp()
    assert end_of_day("2027-02-28") == int(expected)


# --- WP1 ---------------------------------------------------------------------------


def test_wp1_verifies_valid_with_its_permit_and_claims(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    code = mint_wp1(issuer_key, permit, iat=NOW - 60)
    assert code.startswith("WP1:")
    verdict = twin.verify_qr(code, trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons, verdict.profile) == (codes.VALID, (), codes.PROFILE_WP1)
    assert verdict.permit == permit
    assert verdict.kid == issuer_key.kid
    assert verdict.claims == {"iss": "CN-310000", "iat": NOW - 60, "exp": end_of_day(permit["vt"])}


def test_wp1_layout_is_tagged_cose_sign1_with_alg_and_kid_protected(
    issuer_key: IssuerKey, permit: dict[str, Any]
) -> None:
    cose = cose_of(mint_wp1(issuer_key, permit, iat=NOW))
    assert isinstance(cose, cbor2.CBORTag) and cose.tag == 18
    protected, unprotected, payload, signature = cose.value
    assert cbor2.loads(protected) == {1: -8, 4: issuer_key.kid}
    assert unprotected == {}
    assert len(signature) == 64
    claims = cbor2.loads(payload)
    assert set(claims) == {1, 4, 6, PERMIT_CLAIM}  # no cti, no nbf unless asked
    assert claims[PERMIT_CLAIM] == permit
    # the signature is over Sig_structure (WIRE-FORMAT 2), checked here with bare libsodium
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    nacl.signing.VerifyKey(issuer_key.public_key).verify(signed, signature)


def test_wp1_expires_at_the_end_of_vt_with_60_s_leeway(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    code = mint_wp1(issuer_key, permit, iat=NOW)
    exp = end_of_day(permit["vt"])
    assert twin.verify_qr(code, trust, exp + 59, cache=False).result == codes.VALID
    assert twin.verify_qr(code, trust, exp + 60, cache=False).result == codes.EXPIRED


def test_wp1_with_explicit_times_and_cti(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    code = mint_wp1(issuer_key, permit, iat=NOW, exp=NOW + 3600, nbf=NOW + 600, cti=b"\x01" * 8)
    verdict = twin.verify_qr(code, trust, NOW + 600, cache=False)
    assert verdict.result == codes.VALID
    assert verdict.claims == {"iss": "CN-310000", "iat": NOW, "exp": NOW + 3600, "nbf": NOW + 600, "cti": b"\x01" * 8}
    assert twin.verify_qr(code, trust, NOW + 539, cache=False).result == codes.NOT_YET_VALID


def test_wp1_from_a_permit_record_carries_the_active_card(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    record = PermitRecord(
        **{k: permit[k] for k in ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v", "ssn")},
        status="active",
        cards=(Card("S31000000000001", "replaced"), Card("S31000000000002", "active")),
    )
    verdict = twin.verify_qr(mint_wp1(issuer_key, record, iat=NOW), trust, NOW, cache=False)
    assert verdict.result == codes.VALID
    assert verdict.permit["cn"] == "S31000000000002"


def test_permit_map_has_exactly_the_wire_format_keys(permit: dict[str, Any]) -> None:
    without_card = {k: v for k, v in permit.items() if k not in ("ssn", "cn")}
    assert permit_map({**without_card, "status": "active", "cards": [], "ssn": None}) == without_card
    record = PermitRecord(**without_card)  # no ssn, no card
    assert permit_map(record) == without_card


def test_wp1_signed_for_another_issuer_is_refused_or_unknown_key(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    with pytest.raises(MintError, match="may not sign"):
        mint_wp1(issuer_key, permit, iat=NOW, iss="CN-440000")
    code = mint_wp1(issuer_key, permit, iat=NOW, iss="CN-440000", allow_invalid=True)
    verdict = twin.verify_qr(code, trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.UNKNOWN_KEY, (codes.R_KEY_ISSUER,))
    # the key's second issuer is allowed
    assert twin.verify_qr(mint_wp1(issuer_key, permit, iat=NOW, iss="CN-110000"), trust, NOW).result == codes.VALID


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pn": ""}, "pn"),
        ({"n": None}, "n"),
        ({"nat": "Bra"}, "nat"),
        ({"nat": "BRAZ"}, "nat"),
        ({"dob": "1988-02-30"}, "calendar date"),  # no such day
        ({"dob": "29.02.1988"}, "dob"),
        ({"cat": "D"}, "cat"),
        ({"emp": "91310000MA1FL2AB3"}, "emp"),    # 17 characters
        ({"emp": "91310000ma1fl2ab3c"}, "emp"),   # lower case
        ({"vt": "2025-02-28"}, "before vf"),
        ({"v": -1}, "v"),
        ({"v": True}, "v"),
        ({"v": "3"}, "v"),
        ({"ssn": ""}, "ssn"),
        ({"cn": 42}, "cn"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_mint_refuses_a_permit_a_verifier_would_call_malformed(
    issuer_key: IssuerKey, permit: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(MintError, match=message):
        mint_wp1(issuer_key, {**permit, **change}, iat=NOW, exp=NOW + 60)


@pytest.mark.parametrize(("change", "reason"), [({"nat": "Bra"}, "permit.type.nat"), ({"cat": "D"}, "permit.type.cat")])
def test_allow_invalid_mints_what_the_verifier_rejects(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any],
    change: dict[str, Any], reason: str,
) -> None:
    code = mint_wp1(issuer_key, {**permit, **change}, iat=NOW, allow_invalid=True)
    verdict = twin.verify_qr(code, trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (reason,))


def test_wp1_of_an_ended_permit_is_refused(issuer_key: IssuerKey, permit: dict[str, Any]) -> None:
    with pytest.raises(MintError, match="not after iat"):
        mint_wp1(issuer_key, permit, iat=end_of_day(permit["vt"]))


@pytest.mark.parametrize("cti", [b"\x00" * 7, b"\x00" * 33, "01234567"])
def test_cti_outside_8_to_32_bytes_is_refused(issuer_key: IssuerKey, permit: dict[str, Any], cti: Any) -> None:
    with pytest.raises(MintError, match="cti"):
        mint_wp1(issuer_key, permit, iat=NOW, cti=cti)


# --- ES1 ---------------------------------------------------------------------------


def test_es1_verifies_valid_with_a_fresh_random_cti(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    first = twin.verify_qr(mint_es1(issuer_key, permit, iat=NOW), trust, NOW, cache=False)
    second = twin.verify_qr(mint_es1(issuer_key, permit, iat=NOW), trust, NOW, cache=False)
    assert (first.result, first.profile) == (codes.VALID, codes.PROFILE_ES1)
    assert first.permit == permit
    assert first.claims["exp"] - first.claims["iat"] == 60
    assert len(first.claims["cti"]) == 16
    assert first.claims["cti"] != second.claims["cti"]


def test_es1_expires_after_its_lifetime(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    code = mint_es1(issuer_key, permit, iat=NOW, lifetime=300, cti=b"c" * 16)
    assert twin.verify_qr(code, trust, NOW + 359, cache=False).result == codes.VALID
    assert twin.verify_qr(code, trust, NOW + 360, cache=False).result == codes.EXPIRED


def test_es1_lifetime_over_300_s_is_refused_or_malformed(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    for lifetime in (301, 0, -5):
        with pytest.raises(MintError, match="lifetime"):
            mint_es1(issuer_key, permit, iat=NOW, lifetime=lifetime)
    code = mint_es1(issuer_key, permit, iat=NOW, lifetime=301, allow_invalid=True)
    verdict = twin.verify_qr(code, trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (codes.R_TIME_LIFETIME,))


@pytest.mark.parametrize("missing", ["ssn", "cn"])
def test_es1_needs_ssn_and_cn(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any], missing: str
) -> None:
    partial = {k: v for k, v in permit.items() if k != missing}
    with pytest.raises(MintError, match=missing):
        mint_es1(issuer_key, partial, iat=NOW)
    verdict = twin.verify_qr(mint_es1(issuer_key, partial, iat=NOW, allow_invalid=True), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (f"permit.missing.{missing}",))


# --- sign_cose: the lower layer for variants ----------------------------------------


def _claims(permit: dict[str, Any]) -> dict[int, Any]:
    return {1: "CN-310000", 4: NOW + 3600, 6: NOW, PERMIT_CLAIM: permit}


@pytest.mark.parametrize(
    ("options", "result", "reasons"),
    [
        ({"tag": False}, codes.VALID, ()),  # WIRE-FORMAT 2: tag 18 is optional
        ({"protected_extra": {4: OMIT}, "unprotected": {4: "KID"}}, codes.VALID, ()),  # kid unprotected
        ({"protected_extra": {1: OMIT}}, codes.UNSUPPORTED, (codes.R_HEADER_ALG_MISSING,)),
        ({"protected_extra": {1: OMIT}, "unprotected": {1: -8}}, codes.UNSUPPORTED, (codes.R_HEADER_ALG_MISSING,)),
        ({"protected_extra": {1: -7}}, codes.UNSUPPORTED, (codes.R_HEADER_ALG_UNSUPPORTED,)),
        ({"protected_extra": {2: [99]}}, codes.UNSUPPORTED, (codes.R_HEADER_CRIT,)),
        ({"unprotected": {2: [99]}}, codes.UNSUPPORTED, (codes.R_HEADER_CRIT,)),
        ({"protected_extra": {4: OMIT}}, codes.MALFORMED, (codes.R_HEADER_KID_MISSING,)),
        ({"protected_extra": {4: b"1234567"}}, codes.MALFORMED, (codes.R_HEADER_KID_INVALID,)),
        ({"protected_extra": {4: "12345678"}}, codes.MALFORMED, (codes.R_HEADER_KID_INVALID,)),
        ({"protected_extra": {4: b"\x00" * 8}}, codes.UNKNOWN_KEY, (codes.R_KEY_UNKNOWN,)),
    ],
    ids=["untagged", "kid-unprotected", "alg-missing", "alg-unprotected-only", "alg-es256",
         "crit-protected", "crit-unprotected", "kid-missing", "kid-7-bytes", "kid-text", "kid-unknown"],
)
def test_sign_cose_header_variants(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any],
    options: dict[str, Any], result: str, reasons: tuple[str, ...],
) -> None:
    if options.get("unprotected", {}).get(4) == "KID":
        options = {**options, "unprotected": {4: issuer_key.kid}}
    code = encode_qr("WP1", sign_cose(issuer_key, _claims(permit), **options))
    verdict = twin.verify_qr(code, trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (result, reasons)


def test_sign_cose_with_raw_payload_bytes(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList
) -> None:
    # a signed payload that is not a claims map
    code = encode_qr("WP1", sign_cose(issuer_key, cbor2.dumps(["not", "a", "map"])))
    verdict = twin.verify_qr(code, trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (codes.R_CLAIMS_NOT_MAP,))


def test_a_flipped_signature_bit_is_bad_signature(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    cose = bytearray(sign_cose(issuer_key, _claims(permit)))
    cose[-1] ^= 0x01  # the signature is the last item
    verdict = twin.verify_qr(encode_qr("WP1", bytes(cose)), trust, NOW, cache=False)
    assert (verdict.result, verdict.reasons) == (codes.BAD_SIGNATURE, (codes.R_SIGNATURE_INVALID,))


# --- card certificates ---------------------------------------------------------------


@pytest.fixture
def card_holder(permit: dict[str, Any]) -> dict[str, str]:
    return {"cn": permit["cn"], "ssn": permit["ssn"], "pn": permit["pn"]}


def test_card_certificate_and_software_card_verify_valid(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, card_holder: dict[str, str]
) -> None:
    card = SoftwareCard.derive(b"m" * 32, card_holder["cn"])
    certificate = mint_card_certificate(issuer_key, card_holder, card.public_key, iat=NOW - 86400, exp=NOW + 86400)
    challenge = bytes(range(32))
    verdict = twin.verify_card(certificate, challenge, card.sign_challenge(challenge), trust, NOW)
    assert (verdict.result, verdict.profile) == (codes.VALID, codes.PROFILE_CARD)
    assert verdict.permit == card_holder
    assert verdict.card_public_key == card.public_key
    assert verdict.kid == issuer_key.kid
    # the service's split: certificate, then (after consuming the challenge) the card's signature
    assert twin.verify_card_certificate(certificate, trust, NOW).result == codes.VALID
    assert twin.check_card_signature(card.public_key, challenge, card.sign_challenge(challenge)) is None


def test_card_certificate_layout(issuer_key: IssuerKey, card_holder: dict[str, str]) -> None:
    cpk = b"\x09" * 32
    cose = cbor2.loads(mint_card_certificate(issuer_key, card_holder, cpk, iat=NOW, exp=NOW + 10))
    assert cose.tag == 18
    assert cbor2.loads(cose.value[2]) == {1: "CN-310000", 4: NOW + 10, 6: NOW, -70002: {**card_holder, "cpk": cpk}}


def test_card_from_a_permit_record(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any]
) -> None:
    record = PermitRecord(
        **{k: permit[k] for k in ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v", "ssn")},
        cards=(Card("S31000000000009", "active"),),
    )
    card = SoftwareCard.generate()
    certificate = mint_card_certificate(issuer_key, record, card.public_key, iat=NOW, exp=NOW + 86400)
    verdict = twin.verify_card_certificate(certificate, trust, NOW)
    assert verdict.result == codes.VALID
    assert verdict.permit == {"cn": "S31000000000009", "ssn": permit["ssn"], "pn": permit["pn"]}


def test_another_card_signing_is_bad_signature(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, card_holder: dict[str, str]
) -> None:
    card, impostor = SoftwareCard.generate(), SoftwareCard.generate()
    certificate = mint_card_certificate(issuer_key, card_holder, card.public_key, iat=NOW, exp=NOW + 86400)
    challenge = b"\x42" * 32
    verdict = twin.verify_card(certificate, challenge, impostor.sign_challenge(challenge), trust, NOW)
    assert (verdict.result, verdict.reasons) == (codes.BAD_SIGNATURE, (codes.R_CARD_SIGNATURE,))


def test_expired_card_certificate(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, card_holder: dict[str, str]
) -> None:
    certificate = mint_card_certificate(issuer_key, card_holder, b"\x09" * 32, iat=NOW - 100, exp=NOW - 60)
    assert twin.verify_card_certificate(certificate, trust, NOW).result == codes.EXPIRED


@pytest.mark.parametrize(
    ("holder_change", "cpk", "message"),
    [({"cn": ""}, b"\x09" * 32, "cn"), ({"ssn": None}, b"\x09" * 32, "ssn"), ({}, b"\x09" * 31, "32 bytes")],
)
def test_card_certificate_refuses_incomplete_cards(
    issuer_key: IssuerKey, card_holder: dict[str, str], holder_change: dict[str, Any], cpk: bytes, message: str
) -> None:
    with pytest.raises(MintError, match=message):
        mint_card_certificate(issuer_key, {**card_holder, **holder_change}, cpk, iat=NOW, exp=NOW + 10)


# --- property: minted codes round-trip ------------------------------------------------

_upper = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
_code18 = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=18, max_size=18)
_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31))
_names = st.text(min_size=1, max_size=40)


@st.composite
def permits(draw: st.DrawFn) -> dict[str, Any]:
    vf = draw(_dates)
    vt = draw(st.dates(min_value=vf, max_value=dt.date(2099, 12, 31)))
    permit = {
        "pn": draw(_names), "n": draw(_names), "nat": draw(_upper), "dob": draw(_dates).isoformat(),
        "cat": draw(st.sampled_from("ABC")), "emp": draw(_code18), "vf": vf.isoformat(),
        "vt": vt.isoformat(), "v": draw(st.integers(min_value=0, max_value=2**64 - 1)),
    }
    for optional in ("ssn", "cn"):
        if draw(st.booleans()):
            permit[optional] = draw(_names)
    return permit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(permit=permits(), iat_offset=st.integers(min_value=-10**6, max_value=0))
def test_minted_wp1_round_trips_on_both_twins(
    twin: ModuleType, issuer_key: IssuerKey, trust: fastpath.TrustList, permit: dict[str, Any], iat_offset: int
) -> None:
    exp = end_of_day(permit["vt"])
    iat = min(NOW + iat_offset, exp - 1)
    verdict = twin.verify_qr(mint_wp1(issuer_key, permit, iat=iat), trust, iat, cache=False)
    assert verdict.result == codes.VALID
    assert verdict.permit == permit
    assert verdict.claims["exp"] == exp
