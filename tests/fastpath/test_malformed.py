"""Malformed input, one case per error class, on both twins.

Each case is a literal or bytes crafted layer by layer (tests/fastpath/craft.py),
with a comment saying what is wrong with it. The reason is asserted, not only
the result: both twins must report the same first failing check.
"""

from __future__ import annotations

import tracemalloc
import zlib
from types import ModuleType

import pytest

import fastpath
from fastpath import codes

from . import craft
from .craft import ACTIVE, NOW, bstr, enc, head, qr, raw_map, sign1

KID = ACTIVE.kid
PROTECTED = enc({1: -8, 4: KID})          # a2 01 27 04 48 <kid>: alg EdDSA, kid
PAYLOAD = enc(craft.claims("WP1"))
SIG = bytes(64)                           # never checked: these fail before the signature


def cose(*elements: bytes, count: int | None = None, tag: bytes = b"\xd2") -> bytes:
    """An array head and already encoded elements, behind a tag (b"" for none)."""
    return tag + head(4, len(elements) if count is None else count) + b"".join(elements)


def unsigned(unprotected: bytes) -> bytes:
    """A COSE_Sign1 with a raw unprotected map and a zero signature (fails on it at the earliest)."""
    return cose(bstr(PROTECTED), unprotected, bstr(PAYLOAD), bstr(SIG))


def zlib_header(cmf: int, fdict: bool = False) -> bytes:
    """A 2-byte zlib header with CMF as given and a valid FCHECK."""
    flg = 0x20 if fdict else 0
    flg += (31 - (cmf << 8 | flg) % 31) % 31
    return bytes((cmf, flg))


VALID_MESSAGE = sign1(ACTIVE)
DEFLATED = zlib.compress(VALID_MESSAGE, 9)


def b45(data: bytes) -> str:
    return "WP1:" + craft.base45_encode(data)


# --- WIRE-FORMAT 1: the QR text ------------------------------------------------
TEXT_CASES = [
    # nothing at all: no prefix
    pytest.param("", codes.UNSUPPORTED, codes.R_PREFIX_UNKNOWN, id="empty"),
    # the EU DCC prefix is not ours
    pytest.param("HC1:" + qr(VALID_MESSAGE)[4:], codes.UNSUPPORTED, codes.R_PREFIX_UNKNOWN, id="prefix-hc1"),
    # prefixes are case-sensitive
    pytest.param("wp1:" + qr(VALID_MESSAGE)[4:], codes.UNSUPPORTED, codes.R_PREFIX_UNKNOWN, id="prefix-lower"),
    # a prefix without its colon
    pytest.param("WP1" + qr(VALID_MESSAGE)[4:], codes.UNSUPPORTED, codes.R_PREFIX_UNKNOWN, id="prefix-no-colon"),
    # more base45 than a 4096-byte message can ever need
    pytest.param("WP1:" + "0" * 6201, codes.MALFORMED, codes.R_QR_TOO_LONG, id="too-long"),
    # a lower-case letter: not in the RFC 9285 alphabet
    pytest.param("WP1:6BFOXN%TSMaHO", codes.MALFORMED, codes.R_BASE45_ALPHABET, id="base45-lower-case"),
    # a trailing newline from a scanner is not base45 either
    pytest.param(qr(VALID_MESSAGE) + "\n", codes.MALFORMED, codes.R_BASE45_ALPHABET, id="base45-newline"),
    # non-ASCII
    pytest.param("WP1:6BFÖXN", codes.MALFORMED, codes.R_BASE45_ALPHABET, id="base45-non-ascii"),
    # a lone surrogate in the str
    pytest.param("WP1:6B\ud800", codes.MALFORMED, codes.R_BASE45_ALPHABET, id="base45-surrogate"),
    # 4 characters: length % 3 == 1 cannot be base45
    pytest.param("WP1:ABCD", codes.MALFORMED, codes.R_BASE45_LENGTH, id="base45-length"),
    # "GGW" = 16 + 16*45 + 32*45*45 = 65536: a triple above 65535
    pytest.param("WP1:GGW", codes.MALFORMED, codes.R_BASE45_VALUE, id="base45-triple-65536"),
    # "::" = 44 + 44*45 = 2024: a final pair above 255
    pytest.param("WP1:::", codes.MALFORMED, codes.R_BASE45_VALUE, id="base45-pair-2024"),
    # the largest triple "FGW" = 65535 decodes (0xff 0xff), then fails as zlib
    pytest.param("WP1:FGW", codes.MALFORMED, codes.R_ZLIB_HEADER, id="base45-triple-65535"),
    # prefix only: no bytes to inflate
    pytest.param("WP1:", codes.MALFORMED, codes.R_ZLIB_TRUNCATED, id="base45-empty"),
]


@pytest.mark.parametrize(("text", "result", "reason"), TEXT_CASES)
def test_qr_text(twin: ModuleType, trust: fastpath.TrustList, text: str, result: str, reason: str) -> None:
    verdict = twin.verify_qr(text, trust, NOW)
    assert (verdict.result, verdict.reasons) == (result, (reason,))
    assert verdict.claims is None and verdict.permit is None
    if result == codes.UNSUPPORTED:
        assert verdict.profile is None
    else:
        assert verdict.profile == codes.PROFILE_WP1


@pytest.mark.parametrize("text", [b"WP1:6BF", None, 42, ["WP1:"], bytearray(b"WP1:")], ids=repr)
def test_qr_not_a_str(twin: ModuleType, trust: fastpath.TrustList, text: object) -> None:
    # QR text arrives as str: bytes and anything else are the caller's bad input, still a verdict
    verdict = twin.verify_qr(text, trust, NOW)
    assert (verdict.result, verdict.reasons, verdict.profile) == (codes.MALFORMED, (codes.R_INPUT_TYPE,), None)


def test_qr_at_the_length_limit_is_read(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # 6200 characters is still allowed: the check after it (zlib) is what fails
    verdict = twin.verify_qr("WP1:" + "0" * 6200, trust, NOW)
    assert verdict.reasons == (codes.R_ZLIB_HEADER,)


# --- WIRE-FORMAT 1: zlib ---------------------------------------------------------
ZLIB_CASES = [
    # the COSE bytes without zlib: 0xd2 is no zlib header (method 2)
    pytest.param(VALID_MESSAGE, codes.R_ZLIB_HEADER, id="not-zlib"),
    # FCHECK wrong: (CMF*256 + FLG) % 31 != 0
    pytest.param(b"\x78\x9d" + DEFLATED[2:], codes.R_ZLIB_HEADER, id="fcheck"),
    # compression method 7 instead of 8 (deflate)
    pytest.param(zlib_header(0x77) + DEFLATED[2:], codes.R_ZLIB_HEADER, id="method-7"),
    # CINFO 8: a 64K window, which RFC 1950 forbids
    pytest.param(zlib_header(0x88) + DEFLATED[2:], codes.R_ZLIB_HEADER, id="cinfo-8"),
    # FDICT set: a preset dictionary we do not have
    pytest.param(zlib_header(0x78, fdict=True) + b"\x00\x00\x00\x01" + DEFLATED[2:], codes.R_ZLIB_HEADER,
                 id="fdict"),
    # the Adler-32 at the end does not match
    pytest.param(DEFLATED[:-1] + bytes((DEFLATED[-1] ^ 1,)), codes.R_ZLIB_DATA, id="bad-adler"),
    # deflate block type 3 is reserved
    pytest.param(b"\x78\x9c\x07\x00", codes.R_ZLIB_DATA, id="bad-block-type"),
    # a stored block whose LEN and NLEN do not complement each other
    pytest.param(b"\x78\x01\x01\x05\x00\x00\x00hello", codes.R_ZLIB_DATA, id="bad-stored-nlen"),
    # the Adler-32 is cut off
    pytest.param(DEFLATED[:-4], codes.R_ZLIB_TRUNCATED, id="no-adler"),
    # cut in the middle of the deflate data
    pytest.param(DEFLATED[: len(DEFLATED) // 2], codes.R_ZLIB_TRUNCATED, id="truncated"),
    # a header and nothing else
    pytest.param(b"\x78\x9c", codes.R_ZLIB_TRUNCATED, id="header-only"),
    # one byte: not even a header
    pytest.param(b"\x78", codes.R_ZLIB_TRUNCATED, id="one-byte"),
    # a byte after the end of the stream
    pytest.param(DEFLATED + b"\x00", codes.R_ZLIB_TRAILING, id="trailing-byte"),
    # a second zlib stream after the first
    pytest.param(DEFLATED + zlib.compress(b"x"), codes.R_ZLIB_TRAILING, id="two-streams"),
    # 4097 bytes inflated: one past the limit
    pytest.param(zlib.compress(bytes(4097)), codes.R_ZLIB_TOO_LARGE, id="4097-bytes"),
]


@pytest.mark.parametrize(("deflated", "reason"), ZLIB_CASES)
def test_zlib(twin: ModuleType, trust: fastpath.TrustList, deflated: bytes, reason: str) -> None:
    verdict = twin.verify_qr(b45(deflated), trust, NOW)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (reason,))


def test_zlib_4096_bytes_pass_the_inflate(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # exactly 4096 zero bytes inflate; CBOR then reads one 0 and finds 4095 bytes after it
    verdict = twin.verify_qr(b45(zlib.compress(bytes(4096))), trust, NOW)
    assert verdict.reasons == (codes.R_CBOR_TRAILING,)


def test_zlib_stored_4096_byte_message_fits_the_text_limit(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # a 4096-byte message stored without compression (level 0) must still fit under 6200 characters
    text = b45(zlib.compress(bytes(4096), 0))
    assert len(text) - 4 <= 6200
    assert twin.verify_qr(text, trust, NOW).reasons == (codes.R_CBOR_TRAILING,)


def test_zlib_bomb_is_stopped_at_the_limit(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # 1 MB of zeros deflates to about 1 KB: it must be refused without inflating the megabyte
    bomb = b45(zlib.compress(bytes(1_000_000), 9))
    assert len(bomb) < 6200
    tracemalloc.start()
    try:
        verdict = twin.verify_qr(bomb, trust, NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (codes.R_ZLIB_TOO_LARGE,))
    assert peak < 256 * 1024, f"peak {peak} bytes: the bomb was inflated past the limit"


# --- WIRE-FORMAT 2: CBOR well-formedness -----------------------------------------
NESTED_7 = b"\x81" * 6 + b"\x80"              # 7 arrays, each in the one before
NESTED_6 = b"\x81" * 5 + b"\x80"

CBOR_CASES = [
    # the COSE array with an indefinite length (0x9f ... 0xff)
    pytest.param(b"\xd2\x9f" + bstr(PROTECTED) + b"\xa0" + bstr(PAYLOAD) + bstr(SIG) + b"\xff",
                 codes.R_CBOR_INDEFINITE, id="indefinite-array"),
    # the protected bstr as indefinite-length chunks (0x5f ... 0xff)
    pytest.param(cose(b"\x5f" + bstr(PROTECTED) + b"\xff", b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.R_CBOR_INDEFINITE, id="indefinite-bstr"),
    # an indefinite-length map in the unprotected slot (0xbf ... 0xff)
    pytest.param(unsigned(b"\xbf\x04" + bstr(KID) + b"\xff"), codes.R_CBOR_INDEFINITE, id="indefinite-map"),
    # an indefinite-length text as a map value (0x7f ... 0xff)
    pytest.param(unsigned(b"\xa1\x18\x64\x7f\x61a\xff"), codes.R_CBOR_INDEFINITE, id="indefinite-text"),
    # the same key twice in the unprotected map
    pytest.param(unsigned(raw_map([(b"\x04", bstr(KID)), (b"\x04", bstr(KID))])), codes.R_CBOR_DUPLICATE_KEY,
                 id="duplicate-key"),
    # the same text key twice
    pytest.param(unsigned(raw_map([(b"\x61a", b"\x01"), (b"\x61a", b"\x02")])), codes.R_CBOR_DUPLICATE_KEY,
                 id="duplicate-text-key"),
    # an array at depth 9: COSE array (1), unprotected map (2), then arrays at 3..9
    pytest.param(unsigned(b"\xa1\x18\x64" + NESTED_7), codes.R_CBOR_DEPTH, id="depth-9"),
    # tag 17 (COSE_Mac0) instead of 18
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG), tag=b"\xd1"), codes.R_CBOR_TAG,
                 id="tag-17"),
    # tag 98 (COSE_Sign, two bytes)
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG), tag=b"\xd8\x62"), codes.R_CBOR_TAG,
                 id="tag-98"),
    # tag 18 twice
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG), tag=b"\xd2\xd2"), codes.R_CBOR_TAG,
                 id="tag-18-twice"),
    # a tag inside the message (epoch time 1(0) as an unprotected value)
    pytest.param(unsigned(b"\xa1\x18\x64\xc1\x00"), codes.R_CBOR_TAG, id="tag-inside"),
    # tag 24 (encoded CBOR) around the payload
    pytest.param(cose(bstr(PROTECTED), b"\xa0", b"\xd8\x18" + bstr(PAYLOAD), bstr(SIG)), codes.R_CBOR_TAG,
                 id="tag-on-payload"),
    # tag 18 written in two bytes (0xd8 0x12): not the shortest form
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG), tag=b"\xd8\x12"),
                 codes.R_CBOR_NON_PREFERRED, id="tag-non-preferred"),
    # the array count 4 written as 0x98 0x04
    pytest.param(b"\xd2\x98\x04" + bstr(PROTECTED) + b"\xa0" + bstr(PAYLOAD) + bstr(SIG),
                 codes.R_CBOR_NON_PREFERRED, id="count-non-preferred"),
    # an unprotected value 0 written as 0x19 0x00 0x00
    pytest.param(unsigned(b"\xa1\x18\x64\x19\x00\x00"), codes.R_CBOR_NON_PREFERRED, id="int-non-preferred-16"),
    # 500 written in 4 bytes
    pytest.param(unsigned(b"\xa1\x18\x64\x1a\x00\x00\x01\xf4"), codes.R_CBOR_NON_PREFERRED,
                 id="int-non-preferred-32"),
    # 2**32 - 1 written in 8 bytes
    pytest.param(unsigned(b"\xa1\x18\x64\x1b\x00\x00\x00\x00\xff\xff\xff\xff"), codes.R_CBOR_NON_PREFERRED,
                 id="int-non-preferred-64"),
    # -8 written as 0x38 0x07 instead of 0x27
    pytest.param(unsigned(b"\xa1\x18\x64\x38\x07"), codes.R_CBOR_NON_PREFERRED, id="negative-non-preferred"),
    # the signature's length 64 written in two bytes (0x59 0x00 0x40)
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), b"\x59\x00\x40" + SIG),
                 codes.R_CBOR_NON_PREFERRED, id="length-non-preferred"),
    # 0xff is not UTF-8
    pytest.param(unsigned(b"\xa1\x61\xff\x01"), codes.R_CBOR_INVALID, id="utf8-invalid-byte"),
    # an encoded surrogate (ED A0 80) is not UTF-8
    pytest.param(unsigned(b"\xa1\x63\xed\xa0\x80\x01"), codes.R_CBOR_INVALID, id="utf8-surrogate"),
    # an overlong NUL (C0 80)
    pytest.param(unsigned(b"\xa1\x62\xc0\x80\x01"), codes.R_CBOR_INVALID, id="utf8-overlong"),
    # additional info 28 is reserved
    pytest.param(unsigned(b"\xa1\x18\x64\x1c"), codes.R_CBOR_INVALID, id="reserved-info-28"),
    # additional info 30 on a text string
    pytest.param(unsigned(b"\xa1\x18\x64\x7e"), codes.R_CBOR_INVALID, id="reserved-info-30"),
    # a lone break (0xff) where a value belongs
    pytest.param(unsigned(b"\xa1\x18\x64\xff"), codes.R_CBOR_INVALID, id="lone-break"),
    # an unsigned integer with additional info 31 (no indefinite form exists)
    pytest.param(unsigned(b"\xa1\x18\x64\x1f"), codes.R_CBOR_INVALID, id="uint-info-31"),
    # a tag with additional info 31
    pytest.param(unsigned(b"\xa1\x18\x64\xdf"), codes.R_CBOR_INVALID, id="tag-info-31"),
    # simple value 16 (unassigned)
    pytest.param(unsigned(b"\xa1\x18\x64\xf0"), codes.R_CBOR_INVALID, id="simple-16"),
    # simple value 32 in its two-byte form
    pytest.param(unsigned(b"\xa1\x18\x64\xf8\x20"), codes.R_CBOR_INVALID, id="simple-32"),
    # a bstr as a map key
    pytest.param(unsigned(b"\xa1\x41k\x01"), codes.R_CBOR_INVALID, id="key-bstr"),
    # an array as a map key
    pytest.param(unsigned(b"\xa1\x80\x01"), codes.R_CBOR_INVALID, id="key-array"),
    # true as a map key
    pytest.param(unsigned(b"\xa1\xf5\x01"), codes.R_CBOR_INVALID, id="key-bool"),
    # a float as a map key
    pytest.param(unsigned(b"\xa1\xf9\x3c\x00\x01"), codes.R_CBOR_INVALID, id="key-float"),
    # the protected bstr says 13 bytes, 5 follow
    pytest.param(b"\xd2\x84\x4d" + PROTECTED[:5], codes.R_CBOR_TRUNCATED, id="bstr-past-end"),
    # a bstr claiming 2**32-1 bytes: checked against what is left, never allocated
    pytest.param(b"\xd2\x84\x5a\xff\xff\xff\xff", codes.R_CBOR_TRUNCATED, id="bstr-4GB"),
    # an array claiming 2**64-1 items
    pytest.param(b"\xd2\x9b" + b"\xff" * 8, codes.R_CBOR_TRUNCATED, id="array-huge-count"),
    # a map claiming 2**64-1 pairs
    pytest.param(unsigned(b"\xbb" + b"\xff" * 8), codes.R_CBOR_TRUNCATED, id="map-huge-count"),
    # an array of 4 with 3 elements present
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), count=4), codes.R_CBOR_TRUNCATED,
                 id="array-short"),
    # a 4-byte argument with 2 bytes left
    pytest.param(b"\xd2\x84\x5a\x00\x01", codes.R_CBOR_TRUNCATED, id="argument-cut"),
    # a tag and nothing after it
    pytest.param(b"\xd2", codes.R_CBOR_TRUNCATED, id="tag-only"),
    # nothing at all inflated
    pytest.param(b"", codes.R_CBOR_TRUNCATED, id="empty-message"),
    # a byte after the COSE array
    pytest.param(VALID_MESSAGE + b"\x00", codes.R_CBOR_TRAILING, id="trailing"),
]


@pytest.mark.parametrize(("message", "reason"), CBOR_CASES)
def test_cbor(twin: ModuleType, trust: fastpath.TrustList, message: bytes, reason: str) -> None:
    verdict = twin.verify_qr(qr(message), trust, NOW)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (reason,))
    assert verdict.kid is None


@pytest.mark.parametrize("unprotected", [
    # depth 8 is the limit, not an error: arrays at 3..8 in the unprotected map
    pytest.param(b"\xa1\x18\x64" + NESTED_6, id="depth-8"),
    # 1 and "1" are different keys
    pytest.param(b"\xa2\x01\x27\x61\x31\x27", id="int-and-text-key"),
    # floats of every width are well-formed (an unknown header label is ignored)
    pytest.param(b"\xa3\x18\x64\xf9\x3e\x00\x18\x65\xfa\x3f\xc0\x00\x00\x18\x66\xfb\x3f\xf8" + bytes(6),
                 id="floats"),
    # false, true, null, undefined
    pytest.param(b"\xa4\x18\x64\xf4\x18\x65\xf5\x18\x66\xf6\x18\x67\xf7", id="simple-values"),
    # the largest negative and unsigned integers CBOR has
    pytest.param(b"\xa2\x18\x64\x3b" + b"\xff" * 8 + b"\x18\x65\x1b" + b"\xff" * 8, id="int-extremes"),
])
def test_cbor_well_formed_extras_are_accepted(twin: ModuleType, trust: fastpath.TrustList,
                                              unprotected: bytes) -> None:
    # the unprotected map is not signed: anything well-formed there leaves the code VALID
    message = cose(bstr(PROTECTED), unprotected, bstr(PAYLOAD),
                   bstr(ACTIVE.sign(craft.sig_structure(PROTECTED, PAYLOAD))))
    assert twin.verify_qr(qr(message), trust, NOW).result == codes.VALID


def test_cbor_untagged_cose_is_accepted(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # WIRE-FORMAT 2: "either untagged or wrapped in CBOR tag 18"
    assert twin.verify_qr(qr(sign1(ACTIVE, tag=False)), trust, NOW).result == codes.VALID


def test_cbor_depth_counts_again_inside_the_payload(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # the payload is its own CBOR item: claims map (1), permit map (2), arrays 3..9 in an unknown key
    permit = raw_map([(craft.tstr(k), enc(v)) for k, v in craft.PERMIT.items()] + [(craft.tstr("x"), NESTED_7)])
    payload = raw_map([(enc(1), enc("CN-310000")), (enc(4), enc(NOW + 3600)), (enc(6), enc(NOW - 60)),
                       (enc(-70001), permit)])
    verdict = twin.verify_qr(qr(sign1(ACTIVE, payload)), trust, NOW)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (codes.R_CBOR_DEPTH,))


# --- WIRE-FORMAT 2: COSE structure -------------------------------------------------
COSE_CASES = [
    # a plain CBOR map of claims, unsigned (cwt 3.3.0 was seen to accept this)
    pytest.param(PAYLOAD, codes.R_COSE_STRUCTURE, id="plain-claims-map"),
    # the same plain map behind tag 18
    pytest.param(b"\xd2" + PAYLOAD, codes.R_COSE_STRUCTURE, id="tagged-map"),
    # 5 elements
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG), bstr(SIG)), codes.R_COSE_STRUCTURE,
                 id="5-elements"),
    # 3 elements: no signature
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD)), codes.R_COSE_STRUCTURE, id="3-elements"),
    # an empty array
    pytest.param(b"\xd2\x80", codes.R_COSE_STRUCTURE, id="0-elements"),
    # a detached payload (nil) is not allowed
    pytest.param(cose(bstr(PROTECTED), b"\xa0", b"\xf6", bstr(SIG)), codes.R_COSE_STRUCTURE, id="payload-nil"),
    # the protected header as a map instead of a bstr
    pytest.param(cose(PROTECTED, b"\xa0", bstr(PAYLOAD), bstr(SIG)), codes.R_COSE_STRUCTURE,
                 id="protected-not-bstr"),
    # the unprotected header as an (empty) bstr instead of a map
    pytest.param(cose(bstr(PROTECTED), b"\x40", bstr(PAYLOAD), bstr(SIG)), codes.R_COSE_STRUCTURE,
                 id="unprotected-not-map"),
    # the payload as a map instead of a bstr
    pytest.param(cose(bstr(PROTECTED), b"\xa0", PAYLOAD, bstr(SIG)), codes.R_COSE_STRUCTURE,
                 id="payload-not-bstr"),
    # the signature as a text
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), craft.tstr("x" * 64)), codes.R_COSE_STRUCTURE,
                 id="signature-not-bstr"),
    # a 63-byte signature
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG[:63])), codes.R_COSE_SIGNATURE_LENGTH,
                 id="signature-63"),
    # a 65-byte signature
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG + b"\x00")),
                 codes.R_COSE_SIGNATURE_LENGTH, id="signature-65"),
    # an empty signature
    pytest.param(cose(bstr(PROTECTED), b"\xa0", bstr(PAYLOAD), b"\x40"), codes.R_COSE_SIGNATURE_LENGTH,
                 id="signature-empty"),
    # the protected bstr holds an array, not a map
    pytest.param(cose(bstr(enc([1, -8])), b"\xa0", bstr(PAYLOAD), bstr(SIG)), codes.R_COSE_PROTECTED,
                 id="protected-array"),
    # the protected bstr holds a map and a byte after it
    pytest.param(cose(bstr(PROTECTED + b"\x00"), b"\xa0", bstr(PAYLOAD), bstr(SIG)), codes.R_CBOR_TRAILING,
                 id="protected-trailing"),
    # the protected map repeats alg
    pytest.param(cose(bstr(raw_map([(b"\x01", b"\x27"), (b"\x01", b"\x27"), (b"\x04", bstr(KID))])), b"\xa0",
                      bstr(PAYLOAD), bstr(SIG)), codes.R_CBOR_DUPLICATE_KEY, id="protected-duplicate"),
    # the protected map is cut short
    pytest.param(cose(bstr(PROTECTED[:-3]), b"\xa0", bstr(PAYLOAD), bstr(SIG)), codes.R_CBOR_TRUNCATED,
                 id="protected-truncated"),
]


@pytest.mark.parametrize(("message", "reason"), COSE_CASES)
def test_cose_structure(twin: ModuleType, trust: fastpath.TrustList, message: bytes, reason: str) -> None:
    verdict = twin.verify_qr(qr(message), trust, NOW)
    assert (verdict.result, verdict.reasons) == (codes.MALFORMED, (reason,))


def test_cose_signature_length_is_checked_before_the_header(twin: ModuleType, trust: fastpath.TrustList) -> None:
    # no alg and a 63-byte signature: the structure check comes first
    message = cose(bstr(enc({4: KID})), b"\xa0", bstr(PAYLOAD), bstr(SIG[:63]))
    assert twin.verify_qr(qr(message), trust, NOW).reasons == (codes.R_COSE_SIGNATURE_LENGTH,)


# --- WIRE-FORMAT 2's two clarifications (issue 14): signature length, empty protected ----
SIG_70 = bytes(70)  # an ES256 signature in DER is about 70 bytes
ES256 = enc({1: -7, 4: KID})  # a2 01 26 04 48 <kid>: alg ES256

CLARIFICATION_CASES = [
    # a 70-byte signature under alg ES256: the length is a structure check, before the header
    pytest.param(cose(bstr(ES256), b"\xa0", bstr(PAYLOAD), bstr(SIG_70)),
                 codes.MALFORMED, codes.R_COSE_SIGNATURE_LENGTH, id="es256-signature-70"),
    # the same 70 bytes under crit: still the length first
    pytest.param(cose(bstr(enc({1: -8, 2: [4], 4: KID})), b"\xa0", bstr(PAYLOAD), bstr(SIG_70)),
                 codes.MALFORMED, codes.R_COSE_SIGNATURE_LENGTH, id="crit-signature-70"),
    # a 70-byte signature and a protected bstr that holds no map: the length is checked first
    pytest.param(cose(bstr(b"\x01"), b"\xa0", bstr(PAYLOAD), bstr(SIG_70)),
                 codes.MALFORMED, codes.R_COSE_SIGNATURE_LENGTH, id="protected-int-signature-70"),
    # a 70-byte signature and an empty protected bstr: the length, not the missing alg
    pytest.param(cose(b"\x40", raw_map([(b"\x04", bstr(KID))]), bstr(PAYLOAD), bstr(SIG_70)),
                 codes.MALFORMED, codes.R_COSE_SIGNATURE_LENGTH, id="protected-empty-signature-70"),
    # an empty protected bstr (0x40), the kid unprotected: no protected header, so no alg
    pytest.param(cose(b"\x40", raw_map([(b"\x04", bstr(KID))]), bstr(PAYLOAD), bstr(SIG)),
                 codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="protected-empty"),
    # an empty protected bstr and no kid anywhere: the missing alg is found first
    pytest.param(cose(b"\x40", b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="protected-empty-no-kid"),
    # an empty protected bstr, alg and kid in the unprotected map: alg counts only protected
    pytest.param(cose(b"\x40", raw_map([(b"\x01", b"\x27"), (b"\x04", bstr(KID))]), bstr(PAYLOAD), bstr(SIG)),
                 codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="protected-empty-alg-unprotected"),
    # a protected bstr holding an empty map (0x41 0xa0) is not empty: one map, without alg
    pytest.param(cose(bstr(b"\xa0"), raw_map([(b"\x04", bstr(KID))]), bstr(PAYLOAD), bstr(SIG)),
                 codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING, id="protected-empty-map"),
    # a protected bstr holding the integer 1: not a map
    pytest.param(cose(bstr(b"\x01"), b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.MALFORMED, codes.R_COSE_PROTECTED, id="protected-int"),
    # a protected bstr holding null (0xf6): not a map
    pytest.param(cose(bstr(b"\xf6"), b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.MALFORMED, codes.R_COSE_PROTECTED, id="protected-null"),
    # a protected bstr holding a bstr that holds the map: one level of wrapping too many
    pytest.param(cose(bstr(bstr(PROTECTED)), b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.MALFORMED, codes.R_COSE_PROTECTED, id="protected-bstr-in-bstr"),
    # a protected bstr holding two maps: not exactly one
    pytest.param(cose(bstr(PROTECTED + b"\xa0"), b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.MALFORMED, codes.R_CBOR_TRAILING, id="protected-two-maps"),
    # a protected bstr holding one byte that starts a map of one pair and nothing else
    pytest.param(cose(bstr(b"\xa1"), b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.MALFORMED, codes.R_CBOR_TRUNCATED, id="protected-map-head-only"),
    # a protected bstr holding the map behind tag 18: no tags inside
    pytest.param(cose(bstr(b"\xd2" + PROTECTED), b"\xa0", bstr(PAYLOAD), bstr(SIG)),
                 codes.MALFORMED, codes.R_CBOR_TAG, id="protected-tagged-map"),
]


@pytest.mark.parametrize(("message", "result", "reason"), CLARIFICATION_CASES)
def test_signature_length_and_protected_header_clarifications(
        twin: ModuleType, trust: fastpath.TrustList, message: bytes, result: str, reason: str) -> None:
    # the same rules for a QR code and for a card certificate (WIRE-FORMAT 6: "exactly as in section 2")
    for verdict in (twin.verify_qr(qr(message), trust, NOW), twin.verify_card_certificate(message, trust, NOW)):
        assert (verdict.result, verdict.reasons) == (result, (reason,))
        assert verdict.kid is None  # all of these fail before the kid is taken
