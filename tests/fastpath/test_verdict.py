"""The Verdict: one class for both twins, equality without ``cached``, a JSON-friendly form."""

from __future__ import annotations

import json

import pytest

from fastpath import StatusRef, Verdict, codes

CLAIMS = {"iss": "CN-310000", "exp": 2000, "iat": 1000, "cti": b"\x00\x01\xfe\xff" * 2}
PERMIT = {"pn": "WP3100002025000123", "n": "DOE, JANE"}
KID = bytes.fromhex("f0ec10fcae52976f")


def full(**changes: object) -> Verdict:
    fields: dict[str, object] = dict(result=codes.VALID, reasons=(), profile=codes.PROFILE_WP1, claims=dict(CLAIMS),
                                     permit=dict(PERMIT), card_public_key=None, kid=KID, cached=False)
    fields.update(changes)
    return Verdict(**fields)  # type: ignore[arg-type]


def test_defaults() -> None:
    verdict = Verdict(codes.UNSUPPORTED, (codes.R_PREFIX_UNKNOWN,))
    assert (verdict.profile, verdict.claims, verdict.permit, verdict.card_public_key, verdict.kid,
            verdict.status_ref, verdict.cached) == (None, None, None, None, None, None, False)
    assert not verdict.ok


def test_fields_after_profile_are_keyword_only() -> None:
    # claims, permit, card key, kid, cached: named at every call site, never counted by position
    with pytest.raises(TypeError):
        Verdict(codes.VALID, (), codes.PROFILE_WP1, dict(CLAIMS))  # type: ignore[misc]
    assert Verdict(codes.VALID, (), codes.PROFILE_WP1, kid=KID).kid == KID


def test_ok_only_for_valid() -> None:
    assert full().ok
    assert not full(result=codes.EXPIRED, reasons=(codes.R_TIME_EXPIRED,)).ok


def test_equality_ignores_cached_only() -> None:
    assert full(cached=True) == full()
    for change in (dict(result=codes.EXPIRED), dict(reasons=("x",)), dict(profile=codes.PROFILE_ES1),
                   dict(claims=None), dict(permit={}), dict(card_public_key=bytes(32)), dict(kid=bytes(8)),
                   dict(status_ref=StatusRef("https://pv.example/v1/status-lists/permits", 7))):
        assert full(**change) != full(), change
    assert full() != "VALID"


def test_not_hashable_and_slotted() -> None:
    with pytest.raises(TypeError):
        hash(full())
    with pytest.raises(AttributeError):
        full().extra = 1  # type: ignore[attr-defined]


def test_as_dict_is_json() -> None:
    verdict = full(card_public_key=b"\xfb" * 32, status_ref=StatusRef("https://pv.example/sl/permits", 42),
                   cached=True)
    data = verdict.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "result": "VALID", "reasons": [], "profile": "WP1",
        "claims": {"iss": "CN-310000", "exp": 2000, "iat": 1000, "cti": "AAH-_wAB_v8"},
        "permit": PERMIT, "card_public_key": "-_v7" * 10 + "-_s", "kid": "8OwQ_K5Sl28",
        "status_ref": {"uri": "https://pv.example/sl/permits", "idx": 42}, "cached": True,
    }
    data["permit"]["pn"] = "changed"
    assert verdict.permit == PERMIT


def test_as_dict_of_a_bare_failure() -> None:
    data = Verdict(codes.MALFORMED, (codes.R_BASE45_ALPHABET,), codes.PROFILE_WP1).as_dict()
    assert data["reasons"] == ["base45.alphabet"]
    assert data["claims"] is None and data["permit"] is None and data["kid"] is None


def test_status_ref_is_a_named_pair() -> None:
    ref = StatusRef("https://pv.example/sl/permits", 42)
    assert ref == ("https://pv.example/sl/permits", 42) and (ref.uri, ref.idx) == tuple(ref)


def test_repr_has_no_personal_data() -> None:
    text = repr(full(status_ref=StatusRef("https://pv.example/sl/permits", 424242)))
    assert "424242" not in text
    assert "VALID" in text and KID.hex() in text
    assert "DOE" not in text and "WP3100002025000123" not in text
