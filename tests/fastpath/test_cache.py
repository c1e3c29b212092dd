"""The verdict cache (DESIGN "Hot path cost"), on both twins.

A repeated WP1 text skips everything up to the time checks; the cache lives in
the TrustList, so a new list starts empty; ES1 codes and card certificates are
never cached.
"""

from __future__ import annotations

from types import ModuleType

import fastpath
from fastpath import codes

from . import craft
from .craft import ACTIVE, NOW, PERMIT, STRANGER, es1, qr, sign1, wp1


def test_hit_is_marked_and_equal(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = wp1(ACTIVE)
    first = twin.verify_qr(text, trust, NOW)
    second = twin.verify_qr(text, trust, NOW)
    assert first.ok and not first.cached
    assert second.ok and second.cached
    assert second == first
    assert (second.claims, second.permit, second.kid, second.profile) == (first.claims, first.permit,
                                                                          first.kid, first.profile)


def test_time_checks_run_on_a_hit(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = wp1(ACTIVE, iat=NOW - 3600, exp=NOW + 3600)
    assert twin.verify_qr(text, trust, NOW).ok
    later = twin.verify_qr(text, trust, NOW + 3600 + 60)
    assert later.cached and (later.result, later.reasons) == (codes.EXPIRED, (codes.R_TIME_EXPIRED,))
    earlier = twin.verify_qr(text, trust, NOW - 3600 - 61)
    assert earlier.cached and earlier.result == codes.NOT_YET_VALID
    assert twin.verify_qr(text, trust, NOW).ok


def test_an_expired_first_scan_is_cached_and_later_judged_again(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # the times are never cached: a code first seen too early becomes VALID on a hit
    text = wp1(ACTIVE, iat=NOW + 3600, exp=NOW + 7200)
    assert twin.verify_qr(text, trust, NOW).result == codes.NOT_YET_VALID
    verdict = twin.verify_qr(text, trust, NOW + 3600)
    assert verdict.cached and verdict.ok


def test_es1_is_never_cached(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = es1(ACTIVE, iat=NOW)
    assert not twin.verify_qr(text, trust, NOW).cached
    assert not twin.verify_qr(text, trust, NOW).cached
    assert trust.verdict_cache == {}


def test_card_certificates_are_never_cached(twin: ModuleType, trust: fastpath.TrustList) -> None:
    certificate = sign1(ACTIVE, craft.claims("CARD"))
    assert twin.verify_card_certificate(certificate, trust, NOW).ok
    assert not twin.verify_card_certificate(certificate, trust, NOW).cached
    assert trust.verdict_cache == {}


def test_cache_false_bypasses_it(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = wp1(ACTIVE)
    assert not twin.verify_qr(text, trust, NOW, cache=False).cached
    assert trust.verdict_cache == {}
    twin.verify_qr(text, trust, NOW)
    assert not twin.verify_qr(text, trust, NOW, cache=False).cached


def test_a_new_trust_list_starts_empty(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = wp1(ACTIVE)
    assert twin.verify_qr(text, trust, NOW).ok
    assert twin.verify_qr(text, trust, NOW).cached
    # the key is revoked in the next list: the cached VALID must not survive it
    revoked = fastpath.TrustList.from_jwks(craft.jwks(ACTIVE.jwk(status="revoked")))
    verdict = twin.verify_qr(text, revoked, NOW)
    assert (verdict.result, verdict.cached) == (codes.KEY_REVOKED, False)


def test_mutating_a_verdict_does_not_corrupt_the_cache(twin: ModuleType, trust: fastpath.TrustList) -> None:
    text = wp1(ACTIVE)
    for verdict in (twin.verify_qr(text, trust, NOW), twin.verify_qr(text, trust, NOW)):
        assert verdict.permit is not None and verdict.claims is not None
        verdict.permit["pn"] = "FORGED"
        verdict.permit["cat"] = "A"
        verdict.claims["exp"] = NOW + 10**9
        verdict.claims["iss"] = "CN-999999"
    again = twin.verify_qr(text, trust, NOW)
    assert again.cached and again.permit == PERMIT
    assert again.claims is not None and again.claims["iss"] == "CN-310000"
    assert twin.verify_qr(text, trust, NOW + 3 * 365 * 86400).result == codes.EXPIRED


def test_failure_after_the_signature_is_cached(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # a good signature with a bad issuer: worth keeping, it cost a verify
    text = wp1(ACTIVE, iss="CN-440000")
    first = twin.verify_qr(text, trust, NOW)
    second = twin.verify_qr(text, trust, NOW)
    assert (first.result, first.cached, second.cached) == (codes.UNKNOWN_KEY, False, True)
    assert second == first
    # bad claims under a good signature
    text = wp1(ACTIVE, permit={**PERMIT, "cat": "Z"})
    twin.verify_qr(text, trust, NOW)
    again = twin.verify_qr(text, trust, NOW)
    assert again.cached and again.reasons == ("permit.type.cat",)


def test_failures_before_the_signature_are_not_cached(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # junk and forgeries must not push real codes out of the cache
    for text in ("WP1:GGW", wp1(STRANGER), qr(sign1(ACTIVE, signer=STRANGER))):
        twin.verify_qr(text, trust, NOW)
        assert not twin.verify_qr(text, trust, NOW).cached
    assert trust.verdict_cache == {}


def test_cache_is_bounded_and_evicts_the_oldest(twin: ModuleType) -> None:
    trust = fastpath.TrustList.from_jwks(craft.trust_list_json(), cache_limit=3)
    texts = [wp1(ACTIVE, permit={**PERMIT, "v": v}) for v in range(5)]
    for text in texts:
        assert twin.verify_qr(text, trust, NOW).ok
        assert len(trust.verdict_cache) <= 3
    assert len(trust.verdict_cache) == 3
    assert twin.verify_qr(texts[4], trust, NOW).cached      # the newest stayed
    assert not twin.verify_qr(texts[0], trust, NOW).cached  # the oldest went


def test_cache_limit_zero_disables_it(twin: ModuleType) -> None:
    trust = fastpath.TrustList.from_jwks(craft.trust_list_json(), cache_limit=0)
    text = wp1(ACTIVE)
    twin.verify_qr(text, trust, NOW)
    assert not twin.verify_qr(text, trust, NOW).cached
    assert trust.verdict_cache == {}


def test_cache_survives_threads(twin: ModuleType) -> None:
    # many threads filling a small cache at once: no exception, the bound holds, verdicts stay right
    from concurrent.futures import ThreadPoolExecutor

    trust = fastpath.TrustList.from_jwks(craft.trust_list_json(), cache_limit=8)
    texts = [wp1(ACTIVE, permit={**PERMIT, "v": v}) for v in range(40)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda t: twin.verify_qr(t, trust, NOW), texts * 5))
    assert all(v.ok for v in verdicts)
    assert [v.permit["v"] for v in verdicts if v.permit] == list(range(40)) * 5
    assert len(trust.verdict_cache) <= 8
