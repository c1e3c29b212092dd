"""The compiled twin under threads: right verdicts when many threads verify at
once (one shared trust list and verdict cache), and the GIL released around the
Ed25519 verify so that threads run side by side.

No timings: the GIL test counts what a thread could do while another held the
interpreter, with forced switching turned off.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fastpath
from fastpath import _verify_c as C
from fastpath import codes

from ..fastpath import craft
from ..fastpath.craft import ACTIVE, NOW, PERMIT, REVOKED, RETIRED, STRANGER, claims, es1, qr, sign1, wp1

CHALLENGE = bytes(range(32))


def _codes() -> list[str]:
    """Valid and invalid codes of every kind, each different."""
    texts = []
    for i in range(40):
        permit = {**PERMIT, "pn": f"WP31000020250{i:05d}", "v": i}
        texts.append(wp1(ACTIVE, permit=permit))
        texts.append(es1(ACTIVE, iat=NOW - i, permit=permit))
    texts += [wp1(RETIRED), wp1(REVOKED), wp1(STRANGER), wp1(ACTIVE, iat=NOW + 3600),
              wp1(ACTIVE, exp=NOW - 3600, iat=NOW - 7200), wp1(ACTIVE, iss="CN-440000"),
              qr(sign1(ACTIVE, claims("WP1"), signer=STRANGER)), "WP1:" + "A" * 10, "HC1:ABC",
              qr(b"\x84\x40\xa0\x40\x40")]
    return texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _codes()


def test_many_threads_get_the_verdicts_of_one(texts: list[str]) -> None:
    trust = fastpath.TrustList.from_jwks(craft.trust_list_json())
    trust.cache_limit = 16  # smaller than the codes: entries are evicted while threads read
    expected = [C.verify_qr(text, fastpath.TrustList.from_jwks(craft.trust_list_json()), NOW, cache=False)
                for text in texts]
    assert {v.result for v in expected} >= {codes.VALID, codes.KEY_REVOKED, codes.UNKNOWN_KEY,
                                            codes.NOT_YET_VALID, codes.EXPIRED, codes.BAD_SIGNATURE,
                                            codes.MALFORMED, codes.UNSUPPORTED}
    failures: list[Any] = []
    barrier = threading.Barrier(6)

    def work(offset: int) -> None:
        barrier.wait()
        for round_ in range(5):
            for i in range(len(texts)):
                j = (i + offset * 7 + round_) % len(texts)
                got = C.verify_qr(texts[j], trust, NOW, cache=(i + offset) % 2 == 0)
                if got != expected[j]:
                    failures.append((j, got, expected[j]))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(trust.verdict_cache) <= trust.cache_limit


def test_card_reads_in_threads() -> None:
    trust = fastpath.TrustList.from_jwks(craft.trust_list_json())
    certificate = sign1(ACTIVE, claims("CARD"))
    good = craft.card_sign(CHALLENGE)
    bad = craft.card_sign(CHALLENGE, domain=b"")
    results: list[tuple[str, str]] = []

    def work() -> None:
        for _ in range(200):
            results.append((C.verify_card(certificate, CHALLENGE, good, trust, NOW).result,
                            C.verify_card(certificate, CHALLENGE, bad, trust, NOW).result))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(codes.VALID, codes.BAD_SIGNATURE)] * 800


@pytest.fixture
def no_forced_switching() -> Iterator[None]:
    """Turn off the interpreter's forced GIL hand-over (every 5 ms by default):
    another thread can then run only when the running one releases the GIL."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _calls_made_before_another_thread_ran(call: Callable[[], object], cap: int) -> int:
    """Loop ``call`` until a second thread gets to run (or ``cap`` calls); return the count.

    With forced switching off, the second thread (and this one's own start-up
    hand-shake) gets the interpreter only when ``call`` releases the GIL.
    """
    other_ran = threading.Event()
    looping = threading.Event()
    count = 0

    def loop() -> None:
        nonlocal count
        looping.set()
        while count < cap and not other_ran.is_set():
            call()
            count += 1

    looper = threading.Thread(target=loop)
    looper.start()
    looping.wait()
    other = threading.Thread(target=other_ran.set)
    other.start()
    other.join()
    looper.join()
    return count


@pytest.mark.usefixtures("no_forced_switching")
def test_the_gil_is_released_around_the_signature_check() -> None:
    trust = fastpath.TrustList.from_jwks(craft.trust_list_json())
    text = wp1(ACTIVE)
    cap = 3000
    count = _calls_made_before_another_thread_ran(lambda: C.verify_qr(text, trust, NOW, cache=False), cap)
    # Holding the GIL throughout, the loop would have run to the cap first.
    assert count < cap


@pytest.mark.usefixtures("no_forced_switching")
def test_the_gil_is_released_around_the_card_signature_check() -> None:
    key = bytes(craft.card_key().verify_key)
    signature = craft.card_sign(CHALLENGE)
    cap = 3000
    count = _calls_made_before_another_thread_ran(lambda: C.check_card_signature(key, CHALLENGE, signature), cap)
    assert count < cap


@pytest.mark.usefixtures("no_forced_switching")
def test_the_control_a_pure_python_loop_keeps_the_gil() -> None:
    # The control for the two tests above: a loop that never releases the GIL
    # runs to the cap, so ``count < cap`` there does mean a release.
    cap = 3000
    count = _calls_made_before_another_thread_ran(lambda: sum(range(50)), cap)
    assert count == cap
