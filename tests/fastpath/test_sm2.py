"""SM2 with SM3 (WIRE-FORMAT 9) in fastpath: the trust list's SM2 keys, the libcrypto
binding of the compiled twin, its fallback, the algorithm binding, and SM2 tokens
through both twins (codes, certificates, the verdict cache, key statuses)."""

from __future__ import annotations

import ctypes
import json
import os
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpath
from fastpath import _sm2, _sm2_c, codes
from fastpath._sm2 import DEFAULT_USER_ID, N, Sm2PublicKey

from . import craft
from .craft import ACTIVE, NOW, SM2_ACTIVE, SM2_DISTID, SM2_REVOKED, SM2_STRANGER, enc, qr, sign1


@pytest.fixture
def mixed() -> fastpath.TrustList:
    return fastpath.TrustList.from_jwks(craft.mixed_trust_list_json())


def _result(verdict: fastpath.Verdict) -> tuple[str, tuple[str, ...]]:
    return verdict.result, verdict.reasons


# --- the backend ------------------------------------------------------------------------
def test_the_compiled_twin_verifies_sm2_through_openssl() -> None:
    # This machine's libcrypto has SM2: a fallback to gmalg here would be a broken build.
    assert _sm2_c.AVAILABLE, _sm2_c.UNAVAILABLE_REASON
    assert _sm2_c.OPENSSL_VERSION is not None and _sm2_c.OPENSSL_VERSION.startswith("OpenSSL 3")
    assert fastpath.IMPLEMENTATION == "c" and fastpath.SM2_BACKEND.startswith("openssl (OpenSSL 3")


def test_it_is_the_libcrypto_that_pythons_ssl_module_loaded() -> None:
    import _ssl

    with open("/proc/self/maps") as maps:
        loaded = {os.path.realpath(line.split()[-1]) for line in maps if "libcrypto" in line}
    # one libcrypto in the process: ssl's and ours
    assert _ssl is not None and loaded == {os.path.realpath(_sm2_c.LIBCRYPTO_PATH or "")}


# --- the trust list ----------------------------------------------------------------------
def test_an_sm2_key_in_the_trust_list(mixed: fastpath.TrustList) -> None:
    key = mixed.keys[SM2_DISTID.kid]
    assert (key.alg, key.user_id, key.public_key) == (-65537, b"permits@CN-310000", SM2_DISTID.public_key)
    assert isinstance(key.sm2, Sm2PublicKey) and key.sm2.openssl is not None
    verifying, status, issuers = mixed.issuer_keys[SM2_DISTID.kid]
    assert verifying is key.sm2 and status == "active" and issuers == frozenset({"CN-310000", "CN-110000"})
    assert mixed.keys[SM2_ACTIVE.kid].user_id == DEFAULT_USER_ID  # no distid: the default
    # Ed25519 keys keep their 32 bytes in the table: the key's type is its algorithm.
    assert mixed.issuer_keys[ACTIVE.kid][0] == ACTIVE.public_key


def test_the_sm2_kid_is_over_the_uncompressed_point() -> None:
    import hashlib

    jwk = SM2_ACTIVE.jwk()
    point = b"\x04" + craft.base64.urlsafe_b64decode(jwk["x"] + "=") + craft.base64.urlsafe_b64decode(jwk["y"] + "=")
    assert SM2_ACTIVE.kid == hashlib.sha256(point).digest()[:8]
    fastpath.TrustList.from_jwks(craft.jwks(jwk))


@pytest.mark.parametrize(("changes", "message"), [
    ({"crv": "secp256k1"}, "crv must be 'SM2'"),
    ({"kty": "RSA"}, "kty must be"),
    ({"y": craft.DROP}, "x and y"),
    ({"alg": "EdDSA"}, "alg must be 'SM2-SM3'"),
    ({"distid": "a" * 10924}, "distid"),  # 8193 bytes: ENTL would not fit two bytes
    ({"use": "enc"}, "use must be"),
    ({"iss": []}, "iss must be"),
])
def test_bad_sm2_keys_refuse_the_list(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(fastpath.TrustListError, match=message):
        fastpath.TrustList.from_jwks(craft.jwks(ACTIVE.jwk(), SM2_ACTIVE.jwk(**changes)))


def test_a_distid_of_8191_bytes_is_the_longest() -> None:
    longest = craft.Sm2Issuer("longest id", user_id=b"i" * 8191)
    trust = fastpath.TrustList.from_jwks(craft.jwks(longest.jwk()))
    assert trust.keys[longest.kid].user_id == b"i" * 8191


def test_the_points_libcrypto_refuses() -> None:
    point = SM2_ACTIVE.public_key
    for bad in (point[:-1] + bytes([point[-1] ^ 1]), b"\x04" + bytes(64), b"\x02" + point[1:33] + bytes(32),
                point[:64]):
        with pytest.raises(ValueError):
            _sm2_c.OpenSslKey(bad, DEFAULT_USER_ID)
    with pytest.raises(ValueError, match="user id"):
        _sm2_c.OpenSslKey(point, b"")
    assert _sm2_c.OpenSslKey(point, DEFAULT_USER_ID).point == point


# --- the binding ---------------------------------------------------------------------------
def _signed() -> tuple[Sm2PublicKey, bytes, bytes]:
    message = b"Signature1 bytes of some token" * 7
    key = _sm2.load_public_key(SM2_ACTIVE.public_key[1:33], SM2_ACTIVE.public_key[33:], DEFAULT_USER_ID)
    return key, message, SM2_ACTIVE.sign(message)


def test_the_der_given_to_libcrypto_is_the_standard_encoding() -> None:
    # cryptography's encoder is another implementation of the same DER.
    for r, s in ((1, 1), (0x7F, 0x80), (2**255, 2**255 - 1), (N - 1, N - 1), (2**200 + 5, 0xFF << 240)):
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert _sm2_c.der_signature(raw) == encode_dss_signature(r, s)
    key, message, signature = _signed()
    assert _sm2_c.bare_verify(key.openssl, _sm2_c.der_signature(signature), message)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(edit=st.one_of(st.integers(0, 63).map(lambda i: ("flip", i)), st.binary(min_size=64, max_size=64)
                      .map(lambda b: ("random", b)), st.sampled_from([("r", 0), ("s", 0), ("r", N), ("s", N),
                                                                       ("r", 2**256 - 1), ("s", N - 1)])))
def test_openssl_and_gmalg_agree_on_edited_signatures(edit: tuple[str, Any]) -> None:
    key, message, signature = _signed()
    kind, value = edit
    if kind == "flip":
        edited = bytearray(signature)
        edited[value] ^= 0x01
        candidate = bytes(edited)
    elif kind == "random":
        candidate = value
    else:
        half = value.to_bytes(32, "big")
        candidate = half + signature[32:] if kind == "r" else signature[:32] + half
    openssl = _sm2_c.verify(key.openssl, candidate, message)
    assert openssl == _sm2.verify_with_gmalg(key, candidate, message)
    assert openssl is (candidate == signature)


def test_a_failed_verify_leaves_no_openssl_error_behind() -> None:
    # Python's ssl module reads this thread's OpenSSL error queue: nothing may be left in it.
    libcrypto = ctypes.CDLL(_sm2_c.LIBCRYPTO_PATH)
    libcrypto.ERR_peek_error.restype = ctypes.c_ulong
    key, message, signature = _signed()
    assert not _sm2_c.verify(key.openssl, signature, message + b"x")
    assert not _sm2_c.bare_verify(key.openssl, b"\x30\x00", message)
    with pytest.raises(ValueError):
        _sm2_c.OpenSslKey(b"\x04" + bytes(64), DEFAULT_USER_ID)
    assert libcrypto.ERR_peek_error() == 0
    import ssl

    ssl.create_default_context()  # still works


def test_the_compiled_twin_falls_back_to_gmalg_without_openssl_sm2(mixed: fastpath.TrustList) -> None:
    # As on a machine whose libcrypto has no SM2: the same verdicts, from gmalg.
    from fastpath import _verify_c

    without = fastpath.TrustList.from_jwks(craft.mixed_trust_list_json())
    for entry in without.issuer_keys.values():
        if isinstance(entry[0], Sm2PublicKey):
            entry[0].openssl = None
    for text in (craft.wp1(SM2_ACTIVE), craft.wp1(SM2_DISTID), qr(sign1(SM2_ACTIVE, signature=bytes(64)))):
        assert _verify_c.verify_qr(text, without, NOW, cache=False) == _verify_c.verify_qr(text, mixed, NOW,
                                                                                          cache=False)


# --- tokens through both twins ------------------------------------------------------------
@pytest.mark.parametrize("issuer", [SM2_ACTIVE, SM2_DISTID], ids=["default-id", "distid"])
def test_sm2_codes_verify(twin: ModuleType, mixed: fastpath.TrustList, issuer: craft.Sm2Issuer) -> None:
    for text, profile in ((craft.wp1(issuer), codes.PROFILE_WP1), (craft.es1(issuer, iat=NOW - 10), codes.PROFILE_ES1)):
        verdict = twin.verify_qr(text, mixed, NOW, cache=False)
        assert (verdict.result, verdict.profile, verdict.kid) == (codes.VALID, profile, issuer.kid), verdict
        assert verdict.permit is not None and verdict.permit["pn"] == craft.PERMIT["pn"]


@pytest.mark.parametrize(("case", "result", "reason"), [
    ("wrong user id", codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID),
    ("sha256", codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID),
    ("revoked", codes.KEY_REVOKED, codes.R_KEY_REVOKED),
    ("stranger", codes.UNKNOWN_KEY, codes.R_KEY_UNKNOWN),
    ("sm2 signature, eddsa header", codes.UNKNOWN_KEY, codes.R_KEY_ALG),
    ("eddsa signature, sm2 header", codes.UNKNOWN_KEY, codes.R_KEY_ALG),
    ("regional issuer", codes.UNKNOWN_KEY, codes.R_KEY_ISSUER),
    ("der signature", codes.MALFORMED, codes.R_COSE_SIGNATURE_LENGTH),
])
def test_sm2_rejections(twin: ModuleType, mixed: fastpath.TrustList, case: str, result: str, reason: str) -> None:
    claims = craft.claims("WP1")
    payload = enc(claims)
    protected = enc({1: -65537, 4: SM2_DISTID.kid})
    signed = craft.sig_structure(protected, payload)
    message = {
        "wrong user id": lambda: sign1(SM2_DISTID, payload, signature=SM2_DISTID.sign(signed, user_id=DEFAULT_USER_ID)),
        "sha256": lambda: sign1(SM2_DISTID, payload, signature=SM2_DISTID.sign(signed, digest="sha256")),
        "revoked": lambda: sign1(SM2_REVOKED, payload),
        "stranger": lambda: sign1(SM2_STRANGER, payload),
        "sm2 signature, eddsa header": lambda: sign1(SM2_ACTIVE, payload, protected={1: -8, 4: SM2_ACTIVE.kid}),
        "eddsa signature, sm2 header": lambda: sign1(ACTIVE, payload, protected={1: -65537, 4: ACTIVE.kid}),
        "regional issuer": lambda: sign1(SM2_ACTIVE, enc(craft.claims("WP1", iss="CN-440000"))),
        "der signature": lambda: sign1(SM2_ACTIVE, payload, signature=_sm2_c.der_signature(SM2_ACTIVE.sign(signed))),
    }[case]()
    verdict = twin.verify_qr(qr(message), mixed, NOW, cache=False)
    assert _result(verdict) == (result, (reason,)), verdict


def test_an_sm2_card_certificate_with_the_cards_ed25519_signature(twin: ModuleType, mixed: fastpath.TrustList) -> None:
    certificate = sign1(SM2_ACTIVE, craft.claims("CARD"))
    challenge = bytes(range(32))
    verdict = twin.verify_card(certificate, challenge, craft.card_sign(challenge), mixed, NOW)
    assert (verdict.result, verdict.kid) == (codes.VALID, SM2_ACTIVE.kid), verdict
    wrong = twin.verify_card(certificate, challenge, craft.card_sign(challenge, domain=b""), mixed, NOW)
    assert _result(wrong) == (codes.BAD_SIGNATURE, (codes.R_CARD_SIGNATURE,))


def test_the_verdict_cache_serves_sm2_codes(twin: ModuleType, mixed: fastpath.TrustList) -> None:
    text = craft.wp1(SM2_ACTIVE)
    first = twin.verify_qr(text, mixed, NOW)
    again = twin.verify_qr(text, mixed, NOW)
    assert first.ok and not first.cached and again.ok and again.cached


def test_rotation_and_revocation_of_sm2_keys(twin: ModuleType) -> None:
    # An issuer moves from SM2 to Ed25519: its SM2 codes verify while the key is retired,
    # and turn KEY_REVOKED when it is revoked; a new list starts with an empty cache.
    text = craft.wp1(SM2_ACTIVE)
    for status, result in (("active", codes.VALID), ("retired", codes.VALID), ("revoked", codes.KEY_REVOKED)):
        trust = fastpath.TrustList.from_jwks(craft.jwks(ACTIVE.jwk(), SM2_ACTIVE.jwk(status=status)))
        assert twin.verify_qr(text, trust, NOW).result == result
        assert twin.verify_qr(craft.wp1(ACTIVE), trust, NOW).ok


def test_status_lists_may_be_sm2_signed(mixed: fastpath.TrustList) -> None:
    signer = craft.Sm2Issuer("sm2 status signer", issuers=["CN-MOHRSS"], use="status")
    trust = fastpath.TrustList.from_jwks(craft.jwks(signer.jwk(), SM2_ACTIVE.jwk()))
    token = craft.status_list_token(signer, protected={1: -65537, 4: signer.kid, 16: craft.STATUS_LIST_TYP})
    status_list = fastpath.verify_status_list(token, trust, NOW)
    assert status_list.kid == signer.kid and status_list.get(3) == 1
    with pytest.raises(fastpath.StatusListError) as refused:
        fastpath.verify_status_list(craft.status_list_token(SM2_ACTIVE, protected={
            1: -65537, 4: SM2_ACTIVE.kid, 16: craft.STATUS_LIST_TYP}), trust, NOW)
    assert refused.value.reason == codes.R_KEY_USE


def test_the_jwks_is_served_as_loaded(mixed: fastpath.TrustList) -> None:
    assert [k["kty"] for k in mixed.to_jwks()["keys"]].count("EC") == 3
    assert json.loads(craft.mixed_trust_list_json())["keys"] == mixed.to_jwks()["keys"]
