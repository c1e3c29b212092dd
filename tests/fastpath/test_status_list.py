"""Status List Tokens (WIRE-FORMAT 8): fastpath.verify_status_list and StatusList.get.

Tokens are written by tests/fastpath/craft.py from the draft's text (cbor2, zlib,
PyNaCl), not by the code under test. Bad input, one case per error with a comment
saying what is wrong: each is a StatusListError with its reason, never a list.
The verify is pure Python (fastpath/status_list.py, one implementation); the end
of this file reads a list through a token's status claim on both twins.
"""

from __future__ import annotations

import time
import tracemalloc
import zlib
from types import ModuleType
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpath
from fastpath import StatusList, StatusListError, StatusRef, codes, verify_status_list
from fastpath.status_list import MAX_LIST_BYTES, MAX_TOKEN_BYTES

from . import craft
from .craft import (
    ACTIVE, CARDS_LIST_URI, DROP, NOW, PERMITS_LIST_URI, STATUS_RETIRED, STATUS_REVOKED, STATUS_SIGNER, STRANGER,
    claims, pack, qr, sign1, status_claim, status_list_claims, status_list_token,
)

TRUST = fastpath.TrustList.from_jwks(craft.trust_list_json())

# The draft's own examples (draft-ietf-oauth-status-list, "Status List"): 16 entries of
# 1 bit make the bytes b9 a3; 12 entries of 2 bits make c9 44 f9.
DRAFT_1_BIT = ([1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], bytes.fromhex("b9a3"))
DRAFT_2_BITS = ([1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3], bytes.fromhex("c944f9"))


def token_with(bits: Any = 2, raw: bytes | None = None, **claim_changes: Any) -> bytes:
    """A token whose list is ``raw`` (inflated; compressed here) unless ``lst`` is given."""
    if raw is not None:
        claim_changes["lst"] = zlib.compress(raw, 9)
    return status_list_token(payload=status_list_claims(bits=bits, **claim_changes))


def refused(token: Any, now: int = NOW, trust: fastpath.TrustList = TRUST) -> str:
    with pytest.raises(StatusListError) as error:
        verify_status_list(token, trust, now)
    assert error.value.reason in str(error.value)
    return error.value.reason


# --- a good list --------------------------------------------------------------------
def test_verify_a_permits_list() -> None:
    entries = [0, 1, 2, 0, 0, 1]
    status_list = verify_status_list(token_with(2, pack(entries, 2)), TRUST, NOW)
    assert type(status_list) is StatusList
    assert (status_list.sub, status_list.bits, status_list.iat, status_list.exp, status_list.ttl) == (
        PERMITS_LIST_URI, 2, NOW - 60, NOW + 3540, 300)
    assert status_list.kid == STATUS_SIGNER.kid
    assert status_list.lst == pack(entries, 2)
    assert [status_list.get(i) for i in range(len(entries))] == entries
    assert len(status_list) == 8  # 2 bytes of 2-bit entries, the padding of the last byte included


@pytest.mark.parametrize(("entries", "raw", "bits"), [(*DRAFT_1_BIT, 1), (*DRAFT_2_BITS, 2)], ids=["1-bit", "2-bits"])
def test_the_drafts_examples(entries: list[int], raw: bytes, bits: int) -> None:
    # the bytes of the draft's examples, read back entry by entry
    assert pack(entries, bits) == raw  # the test's own writer agrees with the draft
    status_list = verify_status_list(token_with(bits, raw, sub=CARDS_LIST_URI), TRUST, NOW)
    assert [status_list.get(i) for i in range(len(entries))] == entries


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2]).flatmap(lambda bits: st.tuples(
    st.just(bits), st.lists(st.integers(0, (1 << bits) - 1), min_size=1, max_size=300))))
def test_every_entry_reads_back(case: tuple[int, list[int]]) -> None:
    bits, entries = case
    status_list = verify_status_list(token_with(bits, pack(entries, bits)), TRUST, NOW)
    assert [status_list.get(i) for i in range(len(entries))] == entries
    assert all(status_list.get(i) == 0 for i in range(len(entries), len(status_list)))  # padding


def test_a_retired_status_key_still_verifies() -> None:
    token = status_list_token(STATUS_RETIRED)
    assert verify_status_list(token, TRUST, NOW).kid == STATUS_RETIRED.kid


def test_unknown_claims_and_keys_are_ignored() -> None:
    # the draft's aggregation_uri, and a claim of our own
    payload = status_list_claims(status_list={"bits": 1, "lst": zlib.compress(b"\x01"),
                                              "aggregation_uri": "https://pv.example/v1/status-lists"})
    payload[99] = "extra"
    assert verify_status_list(status_list_token(payload=payload), TRUST, NOW).get(0) == 1


def test_an_empty_list_has_no_entries() -> None:
    status_list = verify_status_list(token_with(1, b""), TRUST, NOW)
    assert len(status_list) == 0
    with pytest.raises(IndexError):
        status_list.get(0)


def test_a_list_at_the_bound_is_read() -> None:
    # exactly MAX_LIST_BYTES inflated: 2**26 entries of 2 bits
    status_list = verify_status_list(token_with(2, bytes(MAX_LIST_BYTES - 1) + b"\x40"), TRUST, NOW)
    assert len(status_list) == 1 << 26
    assert status_list.get((1 << 26) - 1) == 1 and status_list.get((1 << 26) - 2) == 0


def test_repr_is_short() -> None:
    text = repr(verify_status_list(token_with(2, bytes(1000)), TRUST, NOW))
    assert "entries=4000" in text and len(text) < 200


# --- get and status_of ------------------------------------------------------------------
@pytest.mark.parametrize("idx", [8, -1, 2**64, "0", 1.0, True], ids=repr)
def test_get_outside_the_list(idx: Any) -> None:
    # no negative indexing from the end, no bool, no float: only 0 <= idx < len
    status_list = verify_status_list(token_with(2, b"\xff\xff"), TRUST, NOW)
    with pytest.raises(IndexError):
        status_list.get(idx)


def test_status_of_a_reference() -> None:
    status_list = verify_status_list(token_with(2, pack([0, 0, 2], 2)), TRUST, NOW)
    assert status_list.status_of(StatusRef(PERMITS_LIST_URI, 2)) == 2
    with pytest.raises(StatusListError) as other_list:
        status_list.status_of(StatusRef(CARDS_LIST_URI, 2))  # the draft: sub must equal the uri
    assert other_list.value.reason == codes.R_STATUS_LIST_URI
    with pytest.raises(StatusListError) as past_the_end:
        status_list.status_of(StatusRef(PERMITS_LIST_URI, 4))
    assert past_the_end.value.reason == codes.R_STATUS_LIST_INDEX


def test_check_time_of_a_list_kept_since() -> None:
    status_list = verify_status_list(status_list_token(), TRUST, NOW)
    status_list.check_time(NOW + 3539)
    with pytest.raises(StatusListError) as error:
        status_list.check_time(NOW + 3540)  # its exp
    assert error.value.reason == codes.R_TIME_EXPIRED


def test_error_classes() -> None:
    assert issubclass(StatusListError, fastpath.FastpathError) and issubclass(StatusListError, ValueError)


# --- bad input --------------------------------------------------------------------------
GOOD = status_list_token()
PROTECTED = {1: -8, 4: STATUS_SIGNER.kid, 16: craft.STATUS_LIST_TYP}


def with_payload(token: bytes, payload: dict[int, Any]) -> bytes:
    """Another payload under the token's own protected header and signature."""
    protected, _, _, signature = cbor2.loads(token).value
    return sign1(STATUS_SIGNER, payload, protected=protected, signature=signature)

BAD_TOKENS = [
    # --- size and structure
    # nothing at all
    pytest.param(b"", codes.R_CBOR_TRUNCATED, id="empty"),
    # cut in the middle (of the signature)
    pytest.param(GOOD[:-10], codes.R_CBOR_TRUNCATED, id="truncated"),
    # cut after the protected header
    pytest.param(GOOD[:30], codes.R_CBOR_TRUNCATED, id="truncated-header"),
    # one byte more than any list within the bound can take, refused before parsing
    pytest.param(b"\x00" * (MAX_TOKEN_BYTES + 1), codes.R_STATUS_LIST_TOO_LONG, id="oversized-token"),
    # a byte after the COSE array
    pytest.param(GOOD + b"\x00", codes.R_CBOR_TRAILING, id="trailing-byte"),
    # the token as text (what an HTTP client might hand over)
    pytest.param(GOOD.hex(), codes.R_INPUT_TYPE, id="hex-text"),
    # a bytearray is not bytes either
    pytest.param(bytearray(GOOD), codes.R_INPUT_TYPE, id="bytearray"),
    # a 70-byte signature: the structure check comes before the header's (WIRE-FORMAT 2)
    pytest.param(status_list_token(signature=bytes(70)), codes.R_COSE_SIGNATURE_LENGTH, id="signature-70"),
    # --- header
    # no typ at all: a CWT that does not say it is a Status List
    pytest.param(status_list_token(typ=DROP), codes.R_HEADER_TYP, id="typ-missing"),
    # the typ of a plain CWT
    pytest.param(status_list_token(typ="application/cwt"), codes.R_HEADER_TYP, id="typ-cwt"),
    # the JWT form's typ
    pytest.param(status_list_token(typ="statuslist+jwt"), codes.R_HEADER_TYP, id="typ-jwt"),
    # typ as a CoAP content-format number
    pytest.param(status_list_token(typ=61), codes.R_HEADER_TYP, id="typ-int"),
    # typ only in the unprotected map, where it is not signed
    pytest.param(status_list_token(typ=DROP, unprotected={16: craft.STATUS_LIST_TYP}), codes.R_HEADER_TYP,
                 id="typ-unprotected"),
    # an empty protected header: no alg (WIRE-FORMAT 2)
    pytest.param(status_list_token(protected=b"", unprotected={4: STATUS_SIGNER.kid}), codes.R_HEADER_ALG_MISSING,
                 id="protected-empty"),
    # ES256 instead of EdDSA
    pytest.param(status_list_token(protected={**PROTECTED, 1: -7}), codes.R_HEADER_ALG_UNSUPPORTED, id="alg-es256"),
    # crit
    pytest.param(status_list_token(protected={**PROTECTED, 2: [16]}), codes.R_HEADER_CRIT, id="crit"),
    # --- keys and signature
    # signed by a permit issuer's key: trusted, but not for Status Lists
    pytest.param(status_list_token(ACTIVE), codes.R_KEY_USE, id="wrong-key-issuer"),
    # signed by a key the trust list does not have
    pytest.param(status_list_token(STRANGER), codes.R_KEY_UNKNOWN, id="wrong-key-stranger"),
    # a revoked Status List key
    pytest.param(status_list_token(STATUS_REVOKED), codes.R_KEY_REVOKED, id="key-revoked"),
    # the status signer's kid, another key's signature
    pytest.param(status_list_token(signer=STRANGER), codes.R_SIGNATURE_INVALID, id="signature-other-key"),
    # the list changed after signing (entry 3 set back to 0: the cancelled permit made valid)
    pytest.param(with_payload(GOOD, status_list_claims(lst=zlib.compress(pack([0] * 8, 2), 9))),
                 codes.R_SIGNATURE_INVALID, id="list-changed"),
    # the exp moved a day on after signing
    pytest.param(with_payload(GOOD, status_list_claims(exp=NOW + 86400)), codes.R_SIGNATURE_INVALID,
                 id="exp-changed"),
    # --- claims
    # the claims as an array
    pytest.param(status_list_token(payload=[PERMITS_LIST_URI]), codes.R_CLAIMS_NOT_MAP, id="claims-array"),
    # no sub: which list is this?
    pytest.param(status_list_token(payload=status_list_claims(sub=DROP)), "claims.missing.sub", id="sub-missing"),
    # an empty sub
    pytest.param(status_list_token(payload=status_list_claims(sub="")), "claims.type.sub", id="sub-empty"),
    # no iat
    pytest.param(status_list_token(payload=status_list_claims(iat=DROP)), "claims.missing.iat", id="iat-missing"),
    # iat as a text
    pytest.param(status_list_token(payload=status_list_claims(iat="1767225540", exp=NOW + 3600)), "claims.type.iat",
                 id="iat-text"),
    # no exp (the draft recommends it; WIRE-FORMAT 8 needs it)
    pytest.param(status_list_token(payload=status_list_claims(exp=DROP)), "claims.missing.exp", id="exp-missing"),
    # exp as a float
    pytest.param(status_list_token(payload=status_list_claims(exp=float(NOW + 3600))), "claims.type.exp",
                 id="exp-float"),
    # no ttl
    pytest.param(status_list_token(payload=status_list_claims(ttl=DROP)), "claims.missing.ttl", id="ttl-missing"),
    # a ttl of 0: the draft wants a positive number
    pytest.param(status_list_token(payload=status_list_claims(ttl=0)), "claims.type.ttl", id="ttl-zero"),
    # a negative ttl
    pytest.param(status_list_token(payload=status_list_claims(ttl=-300)), "claims.type.ttl", id="ttl-negative"),
    # no status_list claim
    pytest.param(status_list_token(payload={2: PERMITS_LIST_URI, 6: NOW, 4: NOW + 60, 65534: 300}),
                 "claims.missing.status_list", id="status-list-missing"),
    # the status_list claim as the bytes of the list alone
    pytest.param(status_list_token(payload=status_list_claims(status_list=zlib.compress(b"\x00"))),
                 "claims.type.status_list", id="status-list-bytes"),
    # an int key in the status_list map
    pytest.param(status_list_token(payload=status_list_claims(status_list={"bits": 1, "lst": b"", 1: 1})),
                 "status_list.type.key", id="status-list-int-key"),
    # --- bits and lst
    # bits 3: not a width the draft knows
    pytest.param(token_with(3, b"\x00"), "status_list.type.bits", id="bits-3"),
    # bits 4 and 8: the draft's, but WIRE-FORMAT 8 has 1 and 2 only
    pytest.param(token_with(4, b"\x00"), "status_list.type.bits", id="bits-4"),
    pytest.param(token_with(8, b"\x00"), "status_list.type.bits", id="bits-8"),
    # bits 0
    pytest.param(token_with(0, b"\x00"), "status_list.type.bits", id="bits-0"),
    # bits as a text
    pytest.param(token_with("2", b"\x00"), "status_list.type.bits", id="bits-text"),
    # bits true (CBOR's simple value, not 1)
    pytest.param(token_with(True, b"\x00"), "status_list.type.bits", id="bits-true"),
    # no bits
    pytest.param(token_with(DROP, b"\x00"), "status_list.missing.bits", id="bits-missing"),
    # no lst
    pytest.param(token_with(lst=DROP), "status_list.missing.lst", id="lst-missing"),
    # lst as base64url text (the JWT form's)
    pytest.param(token_with(lst="eNrbuRgAAhcBXQ"), "status_list.type.lst", id="lst-text"),
    # lst not compressed at all
    pytest.param(token_with(lst=b"\x00\x00\x10"), codes.R_ZLIB_HEADER, id="lst-not-zlib"),
    # raw deflate without the zlib header (wbits -15)
    pytest.param(token_with(lst=zlib.compressobj(9, zlib.DEFLATED, -15).compress(b"\x01" * 10)
                            + zlib.compressobj(9, zlib.DEFLATED, -15).flush()), codes.R_ZLIB_HEADER,
                 id="lst-raw-deflate"),
    # lst cut short
    pytest.param(token_with(lst=zlib.compress(bytes(range(200)))[:-6]), codes.R_ZLIB_TRUNCATED, id="lst-truncated"),
    # the Adler-32 wrong
    pytest.param(token_with(lst=zlib.compress(b"\x01\x02")[:-1] + b"\x00"), codes.R_ZLIB_DATA, id="lst-bad-adler"),
    # bytes after the zlib stream
    pytest.param(token_with(lst=zlib.compress(b"\x01") + b"\x00"), codes.R_ZLIB_TRAILING, id="lst-trailing"),
    # one byte past the bound once inflated
    pytest.param(token_with(2, bytes(MAX_LIST_BYTES + 1)), codes.R_ZLIB_TOO_LARGE, id="lst-past-the-bound"),
    # --- times
    # expired: now is its exp (no leeway for a list)
    pytest.param(token_with(iat=NOW - 3600, exp=NOW), codes.R_TIME_EXPIRED, id="expired"),
    # long expired
    pytest.param(token_with(iat=NOW - 86400 * 10, exp=NOW - 86400 * 9), codes.R_TIME_EXPIRED, id="expired-days"),
    # issued more than the 60 s leeway in the future
    pytest.param(token_with(iat=NOW + 61, exp=NOW + 3600), codes.R_TIME_NOT_YET_VALID, id="not-yet-valid"),
    # expires before it was issued
    pytest.param(token_with(iat=NOW - 60, exp=NOW - 61), codes.R_TIME_LIFETIME, id="exp-before-iat"),
]


@pytest.mark.parametrize(("token", "reason"), BAD_TOKENS)
def test_bad_token(token: Any, reason: str) -> None:
    assert refused(token) == reason


def test_times_at_their_bounds() -> None:
    # a second before exp is still current; iat 60 s ahead is clock skew, not the future
    assert verify_status_list(token_with(iat=NOW - 3600, exp=NOW + 1), TRUST, NOW).exp == NOW + 1
    assert verify_status_list(token_with(iat=NOW + 60, exp=NOW + 3600), TRUST, NOW).iat == NOW + 60


def test_times_are_checked_before_the_inflate() -> None:
    # an expired list with a broken lst: the time is what is reported (the cheaper check)
    assert refused(token_with(lst=b"junk", iat=NOW - 3600, exp=NOW)) == codes.R_TIME_EXPIRED


def test_a_bomb_is_stopped_at_the_bound() -> None:
    # 256 MiB of zeros deflate to about 256 KB: refused without inflating past the 16 MiB bound
    deflate = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    bomb = b"".join(deflate.compress(chunk) for _ in range(256)) + deflate.flush()
    token = token_with(lst=bomb)
    assert len(token) < MAX_TOKEN_BYTES
    tracemalloc.start()
    try:
        reason = refused(token)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason == codes.R_ZLIB_TOO_LARGE
    # the bound once, and zlib's resize of it once: far below the bomb's 256 MiB
    assert peak < 3 * MAX_LIST_BYTES, f"peak {peak} bytes: the bomb was inflated past the bound"


def test_a_permit_token_is_not_a_status_list() -> None:
    # a valid WP1 token's COSE, signed by an issuer: its header has no typ
    assert refused(sign1(ACTIVE, claims("WP1"))) == codes.R_HEADER_TYP


def test_trust_must_be_a_trust_list() -> None:
    with pytest.raises(TypeError):
        verify_status_list(GOOD, craft.trust_list_json(), NOW)  # type: ignore[arg-type]


def test_now_defaults_to_the_clock() -> None:
    # a list current by the clock verifies without a now; the 2026-01-01 one is long past it
    clock = int(time.time())
    assert verify_status_list(token_with(iat=clock - 60, exp=clock + 3600), TRUST).iat == clock - 60
    with pytest.raises(StatusListError):
        verify_status_list(token_with(iat=clock - 7200, exp=clock - 3600), TRUST)


# --- offline: a token's status claim read in a list, on both twins ------------------------
def test_offline_check_of_a_wp1_code(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # entry 5 of permits is 1 (cancelled): the token's claim points there
    permits = verify_status_list(token_with(2, pack([0, 0, 0, 0, 0, 1, 0, 2], 2)), trust, NOW)
    for idx, expected in ((5, 1), (7, 2), (0, 0)):
        verdict = twin.verify_qr(qr(sign1(ACTIVE, claims("WP1", status=status_claim(idx)))), trust, NOW)
        assert verdict.ok and verdict.status_ref is not None
        assert permits.status_of(verdict.status_ref) == expected


def test_offline_check_of_a_card(twin: ModuleType, trust: fastpath.TrustList) -> None:
    cards = verify_status_list(token_with(1, pack([0, 1], 1), sub=CARDS_LIST_URI), trust, NOW)
    certificate = sign1(ACTIVE, claims("CARD", status=status_claim(1, CARDS_LIST_URI)))
    verdict = twin.verify_card_certificate(certificate, trust, NOW)
    assert verdict.ok and cards.status_of(verdict.status_ref) == 1  # type: ignore[arg-type]
