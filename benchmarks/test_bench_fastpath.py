"""fastpath benchmarks: both twins beside their anchors, in one run (DESIGN "Targets").

Run, then print and save the ratios::

    python3 -m pytest benchmarks/test_bench_fastpath.py \\
        --benchmark-json=.benchmarks/fastpath-raw.json
    python3 benchmarks/report.py

Subjects, all on the same ~400-character WP1 code (minted for this run):

- ``libsodium_verify``: the anchor. PyNaCl's ``crypto_sign_open`` of the code's
  signed bytes (the canonical Sig_structure) and its signature: one bare
  libsodium Ed25519 verify through cffi.
- ``libsodium_verify_direct``: the same verify called from C with no cffi in
  between (what the compiled twin calls), for reference.
- ``cwt``: the ``cwt`` library's full QR path: pure-Python base45, zlib,
  ``cwt.decode`` with the COSEKey made from the trust list's JWK (its kid text
  decoded to the raw bytes first, WIRE-FORMAT 4).
- ``pycose``: base45, zlib, ``Sign1Message.decode`` and ``verify_signature``.
- ``c_cold`` / ``py_cold``: ``verify_qr(..., cache=False)`` of each twin.
- ``c_cache_hit`` / ``py_cache_hit``: ``verify_qr`` of a code already in the
  verdict cache (only the time checks run).
- batch: BATCH_SIZE different codes verified cold on 1 thread, or split over 2.
- full cache: the same codes verified with the cache on, into a verdict cache
  that has been at its default bound (65,536) for a while: each verify also
  inserts and evicts.

Every subject checks once that it accepts the code before it is timed.
Benchmarks are not part of the test suite (``testpaths = ["tests"]``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

import cbor2
import pytest

import fastpath
from fastpath import _verify_c, _verify_py
from fastpath._sodium_c import verify as direct_verify
from fastpath._trust import b64url_decode_strict



TWINS = {"c": _verify_c, "py": _verify_py}
BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_BASE45_VALUES = {c: i for i, c in enumerate(BASE45)}


def base45_decode(text: str) -> bytes:
    """A plain pure-Python RFC 9285 decoder, as a library user would write for cwt/pycose."""
    values = [_BASE45_VALUES[c] for c in text]
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        out += (values[i] + values[i + 1] * 45 + values[i + 2] * 2025).to_bytes(2, "big")
    if len(values) % 3 == 2:
        out.append(values[-2] + values[-1] * 45)
    return bytes(out)


def _cose_parts(text: str) -> tuple[bytes, bytes, bytes]:
    """(protected, payload, signature) of a code, decoded with cbor2."""
    cose = cbor2.loads(zlib.decompress(base45_decode(text[4:])))
    protected, _unprotected, payload, signature = cose.value
    return protected, payload, signature


def _subjects(issuing: Any, text: str) -> dict[str, Callable[[], Any]]:
    from nacl.bindings import crypto_sign_open

    trust = issuing.trust()
    public_key = issuing.key.public_key
    protected, payload, signature = _cose_parts(text)
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    signed_message = signature + signed

    def libsodium_verify() -> Any:
        return crypto_sign_open(signed_message, public_key)

    def libsodium_verify_direct() -> Any:
        return direct_verify(signature, signed, public_key)

    # cwt: WIRE-FORMAT 4: the COSEKey's kid must be the raw 8 bytes, not the JWK's text.
    import cwt
    from cwt import COSEKey

    jwk = dict(issuing.jwks["keys"][0])
    jwk["kid"] = b64url_decode_strict(jwk["kid"])
    for member in ("iss", "status", "use"):
        jwk.pop(member, None)
    cwt_key = COSEKey.from_jwk(jwk)

    def cwt_full() -> Any:
        return cwt.decode(zlib.decompress(base45_decode(text[4:])), cwt_key)

    from pycose.keys import OKPKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import Sign1Message

    pycose_key = OKPKey(crv=Ed25519, x=public_key)

    def pycose_full() -> bool:
        message = Sign1Message.decode(zlib.decompress(base45_decode(text[4:])))
        message.key = pycose_key
        return message.verify_signature()

    subjects: dict[str, Callable[[], Any]] = {
        "libsodium_verify": libsodium_verify,
        "libsodium_verify_direct": libsodium_verify_direct,
        "cwt": cwt_full,
        "pycose": pycose_full,
    }
    now = issuing.now
    for name, twin in TWINS.items():
        subjects[f"{name}_cold"] = (lambda twin=twin: twin.verify_qr(text, trust, now, cache=False))
        hit_trust = issuing.trust()
        assert twin.verify_qr(text, hit_trust, now).ok  # fills the cache
        subjects[f"{name}_cache_hit"] = (lambda twin=twin, t=hit_trust: twin.verify_qr(text, t, now))
    return subjects


def _check(name: str, result: Any) -> None:
    """The subject accepted the code (a benchmark of a failure path would flatter it)."""
    if isinstance(result, fastpath.Verdict):
        assert result.ok, (name, result)
        assert result.cached == name.endswith("cache_hit"), (name, result)
    elif name == "cwt":
        assert -70001 in result, result
    elif name in ("pycose", "libsodium_verify_direct"):
        assert result is True
    else:
        assert isinstance(result, bytes)


SUBJECTS = ["libsodium_verify", "libsodium_verify_direct", "cwt", "pycose",
            "c_cold", "py_cold", "c_cache_hit", "py_cache_hit"]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_verify_one_code(benchmark: Any, issuing: Any, wp1_text: str, subject: str) -> None:
    function = _subjects(issuing, wp1_text)[subject]
    _check(subject, function())
    benchmark.group = "one WP1 code"
    benchmark.extra_info["code_length"] = len(wp1_text)
    benchmark.extra_info["implementation"] = fastpath.IMPLEMENTATION
    _check(subject, benchmark(function))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("twin_name", ["c", "py"])
def test_batch(benchmark: Any, issuing: Any, batch_texts: list[str], twin_name: str, threads: int) -> None:
    twin = TWINS[twin_name]
    trust = issuing.trust()
    now = issuing.now
    chunks = [batch_texts[i::threads] for i in range(threads)]

    def verify_chunk(chunk: list[str]) -> int:
        valid = 0
        for text in chunk:
            valid += twin.verify_qr(text, trust, now, cache=False).ok
        return valid

    with ThreadPoolExecutor(max_workers=threads) as pool:
        def run() -> int:
            return sum(pool.map(verify_chunk, chunks))

        assert run() == len(batch_texts)
        benchmark.group = f"batch of {len(batch_texts)} codes"
        benchmark.extra_info.update(threads=threads, codes=len(batch_texts))
        # Many rounds: the minimum needs a moment when both cores are free.
        rounds = 30 if twin_name == "c" else 6
        valid = benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    assert valid == len(batch_texts)


@pytest.mark.parametrize("twin_name", ["c", "py"])
def test_batch_into_a_full_cache(benchmark: Any, issuing: Any, batch_texts: list[str], twin_name: str) -> None:
    twin = TWINS[twin_name]
    now = issuing.now

    def full_trust() -> tuple[tuple[fastpath.TrustList], dict[str, Any]]:
        trust = issuing.trust()
        # Fillers that no code matches, inserted first: they are the oldest. Then
        # the state of a cache that has been full for a while: 60,000 entries
        # already evicted from its front (deleted slots a dict keeps until it resizes).
        churn = 60000
        cache = trust.verdict_cache
        cache.update((f"WP1:filler-{i}", None) for i in range(trust.cache_limit + churn))
        for key in list(islice(cache, churn)):
            del cache[key]
        return (trust,), {}

    def run(trust: fastpath.TrustList) -> int:
        valid = 0
        for text in batch_texts:
            valid += twin.verify_qr(text, trust, now).ok
        assert len(trust.verdict_cache) <= trust.cache_limit
        return valid

    benchmark.group = f"batch of {len(batch_texts)} codes"
    benchmark.extra_info.update(threads=1, codes=len(batch_texts), cache="full")
    rounds = 10 if twin_name == "c" else 3
    assert benchmark.pedantic(run, setup=full_trust, rounds=rounds, iterations=1) == len(batch_texts)
