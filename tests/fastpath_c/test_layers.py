"""The compiled twin's layers at their limits, where the shared suite seldom goes:
large maps (the hashed duplicate-key check), nesting at exactly 8 and 9, the
base45 and inflate caps, every simple value; each compared with the Python twin.
"""

from __future__ import annotations

import zlib

import cbor2
import pytest

import fastpath
from fastpath import _base45_c, _cbor_c, _inflate_c
from fastpath import _verify_c as C
from fastpath import _verify_py as PY
from fastpath import codes

from ..fastpath import craft
from ..fastpath.craft import ACTIVE, NOW, head, qr, sign1

OK = 0


def reason(outcome: bytes | int) -> str | bytes:
    """The reason text of a layer's failure (a Reason number), or its output."""
    return C._reason_text(outcome) if isinstance(outcome, int) and outcome != OK else outcome


@pytest.fixture(scope="module")
def trust() -> fastpath.TrustList:
    return fastpath.TrustList.from_jwks(craft.trust_list_json())


def both(text: str, trust: fastpath.TrustList) -> fastpath.Verdict:
    c_verdict = C.verify_qr(text, trust, NOW, cache=False)
    assert c_verdict == PY.verify_qr(text, trust, NOW, cache=False)
    return c_verdict


def int_keyed_map(count: int, duplicate_at: int | None = None) -> bytes:
    keys = list(range(count))
    if duplicate_at is not None:
        keys[duplicate_at] = keys[0]
    return head(5, count) + b"".join(cbor2.dumps(k) + b"\xf6" for k in keys)


@pytest.mark.parametrize("count", [15, 16, 17, 64, 1000])
def test_large_maps_are_checked_for_duplicate_keys(count: int, trust: fastpath.TrustList) -> None:
    # Maps above 16 keys use a hash table; the last key repeats the first.
    assert _cbor_c.validate(int_keyed_map(count), False) == OK
    assert reason(_cbor_c.validate(int_keyed_map(count, duplicate_at=count - 1), False)) \
        == codes.R_CBOR_DUPLICATE_KEY
    # In a signed payload: the claims map with many unknown claims, and one repeated.
    verdict = both(qr(sign1(ACTIVE, int_keyed_map(count, duplicate_at=count - 1))), trust)
    assert verdict.reasons == (codes.R_CBOR_DUPLICATE_KEY,)


def test_text_and_int_keys_that_look_alike_are_different(trust: fastpath.TrustList) -> None:
    pairs = b"".join(cbor2.dumps(k) + b"\x00" for k in [*range(20), *map(str, range(20))])
    assert _cbor_c.validate(head(5, 40) + pairs, False) == OK


def nested(depth: int) -> bytes:
    return b"\x81" * (depth - 1) + b"\x80"  # ``depth`` arrays, one in the other


@pytest.mark.parametrize(("depth", "expected"), [(8, OK), (9, codes.R_CBOR_DEPTH)])
def test_nesting_limit(depth: int, expected: int | str, trust: fastpath.TrustList) -> None:
    assert reason(_cbor_c.validate(nested(depth), False)) == expected
    # As the unknown claim 99 of a payload, the payload map being depth 1.
    claims = craft.claims("WP1")
    payload = head(5, len(claims) + 1) + cbor2.dumps(claims)[1:] + b"\x18\x63" + nested(depth - 1)
    verdict = both(qr(sign1(ACTIVE, payload)), trust)
    assert verdict.result == (codes.VALID if expected == OK else codes.MALFORMED), verdict


@pytest.mark.parametrize("initial", range(0xE0, 0x100))
def test_every_simple_value(initial: int, trust: fastpath.TrustList) -> None:
    # As the value of an unknown claim: false/true/null/undefined and floats pass.
    claims = craft.claims("WP1")
    body = bytes((initial,)) + b"\x00" * 8
    for size in (1, 2, 3, 5, 9):
        payload = head(5, len(claims) + 1) + cbor2.dumps(claims)[1:] + b"\x18\x63" + body[:size]
        both(qr(sign1(ACTIVE, payload)), trust)


def test_base45_caps() -> None:
    assert _base45_c.b45decode("0" * 6200) == bytes(6200 // 3 * 2 + 1)
    assert reason(_base45_c.b45decode("0" * 6201)) == codes.R_QR_TOO_LONG
    assert reason(_base45_c.b45decode("::")) == codes.R_BASE45_VALUE     # 44 + 44 * 45 > 255
    assert reason(_base45_c.b45decode(":::")) == codes.R_BASE45_VALUE    # > 65535
    assert reason(_base45_c.b45decode(":::a")) == codes.R_BASE45_ALPHABET  # alphabet first
    assert reason(_base45_c.b45decode("ABCD")) == codes.R_BASE45_LENGTH
    assert _base45_c.b45decode("BB8") == b"AB"                           # RFC 9285 4.4


def test_inflate_stops_a_bomb_at_the_cap(trust: fastpath.TrustList) -> None:
    bomb = zlib.compress(b"\x00" * (50 * 1024 * 1024), 9)   # 50 MiB of zeros in ~50 KB
    assert reason(_inflate_c.inflate_bounded(bomb)) == codes.R_ZLIB_TOO_LARGE
    assert _inflate_c.inflate_bounded(zlib.compress(b"\x00" * 4096)) == b"\x00" * 4096
    assert reason(_inflate_c.inflate_bounded(zlib.compress(b"\x00" * 4097))) == codes.R_ZLIB_TOO_LARGE
    small_bomb = zlib.compress(b"\x00" * 100000, 9)          # fits the base45 cap
    assert both("WP1:" + craft.base45_encode(small_bomb), trust).reasons == (codes.R_ZLIB_TOO_LARGE,)


@pytest.mark.parametrize("size", [4096, 4097])
@pytest.mark.parametrize("trailer", ["right", "wrong", "cut", "extra"])
def test_streams_at_the_cap(size: int, trailer: str, trust: fastpath.TrustList) -> None:
    # The stream ends exactly at or one past the cap: the Adler-32 (zlib's own
    # wrapper checks it before Python sees the length) decides before the cap.
    stream = bytearray(zlib.compress(b"\x00" * size, 9))
    if trailer == "wrong":
        stream[-1] ^= 1
    elif trailer == "cut":
        del stream[-2:]
    elif trailer == "extra":
        stream += b"\x00"
    verdict = both("WP1:" + craft.base45_encode(bytes(stream)), trust)
    expected = {"wrong": codes.R_ZLIB_DATA, "cut": codes.R_ZLIB_TRUNCATED,
                "extra": codes.R_ZLIB_TRAILING, "right": None}[trailer]
    if size == 4097 and trailer != "wrong":
        expected = codes.R_ZLIB_TOO_LARGE
    if expected is None:
        assert verdict.reasons[0].startswith(("cbor.", "cose.")), verdict  # inflated: zeros are no COSE
    else:
        assert verdict.reasons == (expected,)


def test_longest_text_and_one_more(trust: fastpath.TrustList) -> None:
    assert both("WP1:" + "0" * 6200, trust).reasons != (codes.R_QR_TOO_LONG,)
    assert both("WP1:" + "0" * 6201, trust).reasons == (codes.R_QR_TOO_LONG,)


def test_non_ascii_texts(trust: fastpath.TrustList) -> None:
    # Strings stored with 1, 2 and 4 bytes per character reach the decoder alike.
    for text in ("WP1:ÀBC", "WP1:ĀBC", "WP1:\U0001F600BC", "WP1:ABC\udc80", "ES1:" + "0" * 10 + "é"):
        assert both(text, trust).reasons == (codes.R_BASE45_ALPHABET,)


def test_a_full_cache_evicts_the_oldest_in_batches() -> None:
    # Above 64 entries the compiled twin evicts a 64th of the cache at once
    # (cheap in a plain dict); the bound holds and the newest codes stay.
    limit = 128
    trust = fastpath.TrustList.from_jwks(craft.trust_list_json(), cache_limit=limit)
    texts = [craft.wp1(ACTIVE, permit={**craft.PERMIT, "v": v}) for v in range(300)]
    for text in texts:
        assert C.verify_qr(text, trust, NOW).ok
        assert len(trust.verdict_cache) <= limit
    assert limit - limit // 64 <= len(trust.verdict_cache)
    assert list(trust.verdict_cache)[-1] == texts[-1]
    assert set(trust.verdict_cache) == set(texts[-len(trust.verdict_cache):])  # exactly the newest
    assert C.verify_qr(texts[-1], trust, NOW).cached
    assert not C.verify_qr(texts[0], trust, NOW).cached
