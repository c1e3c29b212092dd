"""The pure-Python twin: the readable reference of the verification pipeline.

WIRE-FORMAT 1-4, 6 and the status claim of 8, in the order of WIRE-FORMAT 7:

    prefix -> base45 -> zlib -> CBOR -> COSE structure -> header (alg, crit, kid)
    -> key known (a permit issuer's) -> key not revoked -> signature -> claims
    (iss, exp, nbf, iat, cti, the permit or card map, the status claim) -> key
    allowed for iss -> times

The compiled twin (``_verify_c.pyx``) mirrors this module check for check and
reason for reason; when the two disagree, this one is the reference. Every
check that fails raises ``_Reject`` internally; the public functions turn it
into a :class:`~fastpath.Verdict`, so nothing but a verdict leaves them.
"""

from __future__ import annotations

import datetime
import re
import struct
import time
import zlib
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from . import codes
from ._cache import CacheEntry, cache_put
from ._trust import USE_SIG, TrustList
from ._verdict import StatusRef, Verdict

__all__ = ["verify_qr", "verify_card_certificate", "check_card_signature", "verify_card"]

# --- limits ------------------------------------------------------------------
MAX_MESSAGE = 4096        # WIRE-FORMAT 1: the inflated COSE message, at most
MAX_BASE45 = 6200         # base45 text a 4096-byte message can need stored uncompressed (~6161)
MAX_DEPTH = 8             # CBOR nesting, the outer COSE array being depth 1
MAX_CARD_CERTIFICATE = 4096  # a card certificate is a COSE message like the QR's
LEEWAY = 60               # WIRE-FORMAT 3: clock skew, seconds
ES1_MAX_LIFETIME = 300    # WIRE-FORMAT 3: ES1 exp - iat, at most

PREFIXES = {"WP1:": codes.PROFILE_WP1, "ES1:": codes.PROFILE_ES1}

# COSE labels (RFC 9052) and CWT claim keys (RFC 8392), WIRE-FORMAT 2 and 3.
ALG, CRIT, KID, TYP = 1, 2, 4, 16
ALG_EDDSA = -8
ISS, EXP, NBF, IAT, CTI = 1, 4, 5, 6, 7
PERMIT_CLAIM = -70001
CARD_CLAIM = -70002
STATUS_CLAIM = 65535      # WIRE-FORMAT 8: {"status_list": {"idx": uint, "uri": tstr}}

SIG_STRUCTURE_PREFIX = b"\x84\x6aSignature1"  # array(4), tstr(10) "Signature1"
CARD_AUTH_DOMAIN = b"SSC-AUTH-1"              # WIRE-FORMAT 6: what the card signs, before the challenge


class _Reject(Exception):
    """A failed check: its result code, its reason, and the key id when the header
    had given one before the check failed. Never leaves this module."""

    __slots__ = ("result", "reason", "kid")

    def __init__(self, result: str, reason: str, kid: bytes | None = None) -> None:
        self.result = result
        self.reason = reason
        self.kid = kid


def _malformed(reason: str) -> _Reject:
    return _Reject(codes.MALFORMED, reason)


# --- WIRE-FORMAT 1: base45 (RFC 9285) ---------------------------------------
BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_BASE45_CHARS = frozenset(BASE45_ALPHABET)
# str.translate table: each alphabet character to the code point of its value.
_BASE45_VALUES = {ord(c): i for i, c in enumerate(BASE45_ALPHABET)}


def base45_decode(text: str) -> bytes:
    """Decode RFC 9285 base45. Checks, in order: alphabet, length, values."""
    if not _BASE45_CHARS.issuperset(text):
        raise _malformed(codes.R_BASE45_ALPHABET)   # lower case, non-ASCII, anything else
    if len(text) % 3 == 1:
        raise _malformed(codes.R_BASE45_LENGTH)
    values = text.translate(_BASE45_VALUES)
    out = bytearray()
    full = len(values) - len(values) % 3
    for i in range(0, full, 3):
        n = ord(values[i]) + ord(values[i + 1]) * 45 + ord(values[i + 2]) * 2025
        if n > 0xFFFF:
            raise _malformed(codes.R_BASE45_VALUE)
        out += n.to_bytes(2, "big")
    if full != len(values):                        # a final pair encodes one byte
        n = ord(values[full]) + ord(values[full + 1]) * 45
        if n > 0xFF:
            raise _malformed(codes.R_BASE45_VALUE)
        out.append(n)
    return bytes(out)


# --- WIRE-FORMAT 1: zlib (RFC 1950), bounded ---------------------------------
def inflate_bounded(data: bytes, limit: int = MAX_MESSAGE) -> bytes:
    """Exactly one zlib stream inflating to at most ``limit`` bytes (a QR's
    message: MAX_MESSAGE; a Status List: fastpath.status_list.MAX_LIST_BYTES).

    Inflates at most limit + 1 bytes, so a bomb is stopped at the limit and
    never inflated whole.
    """
    if len(data) < 2:
        raise _malformed(codes.R_ZLIB_TRUNCATED)   # not even a header (empty included)
    cmf, flg = data[0], data[1]
    # RFC 1950 2.2: method 8 (deflate), window <= 32K, FCHECK, no preset dictionary.
    if (cmf & 0x0F) != 8 or (cmf >> 4) > 7 or (cmf << 8 | flg) % 31 != 0 or flg & 0x20:
        raise _malformed(codes.R_ZLIB_HEADER)
    inflater = zlib.decompressobj()
    try:
        message = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise _malformed(codes.R_ZLIB_DATA) from None  # bad deflate data or bad Adler-32
    if len(message) > limit:
        raise _malformed(codes.R_ZLIB_TOO_LARGE)
    if not inflater.eof:
        # Output stopped short of the limit, so all input was consumed without
        # reaching the end of the stream (or its Adler-32).
        raise _malformed(codes.R_ZLIB_TRUNCATED)
    if inflater.unused_data:
        raise _malformed(codes.R_ZLIB_TRAILING)
    return message


# --- WIRE-FORMAT 2: strict CBOR (RFC 8949) for untrusted bytes ---------------
class _Undefined:
    """CBOR ``undefined`` (simple value 23): well-formed, never a valid claim."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()
_SIMPLE = {20: False, 21: True, 22: None, 23: UNDEFINED}
_FLOAT_FORMATS = {25: ">e", 26: ">f", 27: ">d"}
_ARGUMENT_SIZES = {24: 1, 25: 2, 26: 4, 27: 8}
COSE_SIGN1_TAG = 18


class _CborReader:
    """A cursor over untrusted bytes; every read checks ``n <= end - pos`` first.

    Rules (WIRE-FORMAT 2 and the contract): definite lengths only; arguments in
    their shortest form; an array or map may sit at most at depth 8 (the
    top-level item is depth 1; scalars and tags add no depth); counts checked
    against the bytes left before anything is built; text valid UTF-8; simple
    values only false/true/null/undefined; floats of 16/32/64 bits accepted in
    any width; map keys int or tstr (judged by the key's initial byte, before it
    is decoded) and unique; no tags, except one tag 18 directly around the
    top-level item when ``allow_cose_tag``.
    """

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise _malformed(codes.R_CBOR_TRUNCATED)
        start = self.pos
        self.pos = start + n
        return self.data[start:self.pos]

    def initial_byte(self) -> int:
        if self.pos >= self.end:
            raise _malformed(codes.R_CBOR_TRUNCATED)
        ib = self.data[self.pos]
        self.pos += 1
        return ib

    def argument(self, info: int) -> int:
        """The argument of a head whose additional info is ``info`` (0..27)."""
        if info < 24:
            return info
        size = _ARGUMENT_SIZES[info]
        value = int.from_bytes(self.take(size), "big")
        # Preferred serialization: the shortest head that holds the value.
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise _malformed(codes.R_CBOR_NON_PREFERRED)
        return value

    def item(self, depth: int, allow_cose_tag: bool = False) -> Any:
        ib = self.initial_byte()
        major, info = ib >> 5, ib & 0x1F
        if major == 7:
            return self.simple_or_float(info)
        if info == 31:
            if 2 <= major <= 5:
                raise _malformed(codes.R_CBOR_INDEFINITE)
            raise _malformed(codes.R_CBOR_INVALID)  # no indefinite form for ints and tags
        if info > 27:
            raise _malformed(codes.R_CBOR_INVALID)  # reserved 28..30
        arg = self.argument(info)
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self.take(arg)
        if major == 3:
            try:
                return self.take(arg).decode("utf-8")
            except UnicodeDecodeError:
                raise _malformed(codes.R_CBOR_INVALID) from None
        if major == 4:
            if depth > MAX_DEPTH:
                raise _malformed(codes.R_CBOR_DEPTH)
            if arg > self.end - self.pos:          # each item takes at least one byte
                raise _malformed(codes.R_CBOR_TRUNCATED)
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            if depth > MAX_DEPTH:
                raise _malformed(codes.R_CBOR_DEPTH)
            if arg > (self.end - self.pos) // 2:   # each pair takes at least two bytes
                raise _malformed(codes.R_CBOR_TRUNCATED)
            result: dict[Any, Any] = {}
            for _ in range(arg):
                if self.pos >= self.end:
                    raise _malformed(codes.R_CBOR_TRUNCATED)
                if self.data[self.pos] >> 5 not in (0, 1, 3):
                    raise _malformed(codes.R_CBOR_INVALID)  # a key that is not int or tstr
                key = self.item(depth + 1)
                if key in result:                  # 1 and "1" are different keys
                    raise _malformed(codes.R_CBOR_DUPLICATE_KEY)
                result[key] = self.item(depth + 1)
            return result
        # major 6: WIRE-FORMAT 2: tag 18 around the COSE array is the only tag allowed.
        if not allow_cose_tag or arg != COSE_SIGN1_TAG:
            raise _malformed(codes.R_CBOR_TAG)
        return self.item(depth)                     # no second tag: allow_cose_tag is off

    def simple_or_float(self, info: int) -> Any:
        if info in _SIMPLE:
            return _SIMPLE[info]
        fmt = _FLOAT_FORMATS.get(info)
        if fmt is None:
            raise _malformed(codes.R_CBOR_INVALID)  # other simple values, reserved info, lone break
        return struct.unpack(fmt, self.take(_ARGUMENT_SIZES[info]))[0]


def cbor_decode(data: bytes, *, allow_cose_tag: bool = False) -> Any:
    """Exactly one CBOR item, with nothing after it."""
    reader = _CborReader(data)
    value = reader.item(1, allow_cose_tag)
    if reader.pos != reader.end:
        raise _malformed(codes.R_CBOR_TRAILING)
    return value


# --- WIRE-FORMAT 2: COSE_Sign1 -----------------------------------------------
def _bstr_head(n: int) -> bytes:
    if n < 24:
        return bytes((0x40 | n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """Canonical CBOR of ["Signature1", protected, h'', payload], built directly."""
    return b"".join((SIG_STRUCTURE_PREFIX, _bstr_head(len(protected)), protected,
                     b"\x40", _bstr_head(len(payload)), payload))


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """libsodium's Ed25519 verify through PyNaCl (cffi releases the GIL around it).

    Callers pass a 32-byte key and a 64-byte signature: libsodium reads both
    without a length of its own.
    """
    try:
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        return False
    return True


def _is_int(value: object) -> bool:
    return type(value) is int  # a CBOR int: not a bool, not a float


class _Signed:
    """The outcome of the checks up to the signature: the kid, the key's issuers, the payload."""

    __slots__ = ("kid", "issuers", "payload")

    def __init__(self, kid: bytes, issuers: frozenset[str], payload: bytes) -> None:
        self.kid = kid
        self.issuers = issuers
        self.payload = payload


def check_cose(message: bytes, trust: TrustList, use: str = USE_SIG, typ: str | None = None) -> _Signed:
    """WIRE-FORMAT 2: structure, header, then the key and the signature; a
    rejection from the key on carries the kid. ``use``: the trust list's keys
    that may sign this message (``sig``: permit tokens and card certificates;
    ``status``: Status Lists, whose protected header must also have ``typ``)."""
    cose = cbor_decode(message, allow_cose_tag=True)
    if (type(cose) is not list or len(cose) != 4 or type(cose[0]) is not bytes
            or type(cose[1]) is not dict or type(cose[2]) is not bytes or type(cose[3]) is not bytes):
        raise _malformed(codes.R_COSE_STRUCTURE)   # payload nil (detached) is not allowed
    protected_bytes, unprotected, payload, signature = cose
    # WIRE-FORMAT 2: the signature's length is a structure check and comes before the
    # header's: a 70-byte (ES256-sized) signature is MALFORMED whatever alg says.
    if len(signature) != 64:
        raise _malformed(codes.R_COSE_SIGNATURE_LENGTH)
    # WIRE-FORMAT 2: an empty protected bstr is "no protected header" (RFC 9052 3), so
    # no alg (UNSUPPORTED); a non-empty one must hold exactly one map (MALFORMED).
    protected = cbor_decode(protected_bytes) if protected_bytes else {}
    if type(protected) is not dict:
        raise _malformed(codes.R_COSE_PROTECTED)
    # WIRE-FORMAT 2: alg only counts in the protected map.
    if ALG not in protected:
        raise _Reject(codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING)
    alg = protected[ALG]
    if not _is_int(alg) or alg != ALG_EDDSA:
        raise _Reject(codes.UNSUPPORTED, codes.R_HEADER_ALG_UNSUPPORTED)
    # WIRE-FORMAT 2: crit is never accepted, in either map.
    if CRIT in protected or CRIT in unprotected:
        raise _Reject(codes.UNSUPPORTED, codes.R_HEADER_CRIT)
    # WIRE-FORMAT 8: a Status List Token says what it is, in the protected header.
    if typ is not None and protected.get(TYP) != typ:
        raise _malformed(codes.R_HEADER_TYP)
    # WIRE-FORMAT 2: kid from the protected map; from the unprotected one only when absent there.
    if KID in protected:
        kid = protected[KID]
    elif KID in unprotected:
        kid = unprotected[KID]
    else:
        raise _malformed(codes.R_HEADER_KID_MISSING)
    if type(kid) is not bytes or len(kid) != 8:
        raise _malformed(codes.R_HEADER_KID_INVALID)
    keys, other_keys = ((trust.issuer_keys, trust.status_keys) if use == USE_SIG
                        else (trust.status_keys, trust.issuer_keys))
    key = keys.get(kid)
    if key is None:
        # A key of the other use is trusted, but never for this: a Status List signer
        # signs no permit, and a permit issuer no Status List.
        raise _Reject(codes.UNKNOWN_KEY, codes.R_KEY_USE if kid in other_keys else codes.R_KEY_UNKNOWN, kid)
    public_key, status, issuers = key
    if status == "revoked":
        raise _Reject(codes.KEY_REVOKED, codes.R_KEY_REVOKED, kid)
    if not ed25519_verify(public_key, signature, sig_structure(protected_bytes, payload)):
        raise _Reject(codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID, kid)
    return _Signed(kid, issuers, payload)


# --- WIRE-FORMAT 3 and 6: claims ---------------------------------------------
_NATIONALITY = re.compile(r"[A-Z]{3}\Z")
_CREDIT_CODE = re.compile(r"[0-9A-Z]{18}\Z")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
PERMIT_KEYS = ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v", "ssn", "cn")
CARD_KEYS = ("cn", "ssn", "pn", "cpk")
CATEGORIES = frozenset({"A", "B", "C"})


def _is_text(value: object) -> bool:
    return type(value) is str and value != ""


def _is_date(value: object) -> bool:
    """A real calendar date written YYYY-MM-DD (ASCII digits; years 0001-9999)."""
    if type(value) is not str:
        return False
    match = _DATE.match(value)
    if match is None:
        return False
    try:
        datetime.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return False
    return True


def _type_error(area: str, name: str) -> _Reject:
    return _malformed(codes.claim_reason(area, "type", name))


def _missing(area: str, name: str) -> _Reject:
    return _malformed(codes.claim_reason(area, "missing", name))


class _Claims:
    """What the claim checks found: the claims by name, the permit (or, for a
    card, its cn/ssn/pn), the card's public key (CARD only), the status claim."""

    __slots__ = ("claims", "permit", "card_public_key", "status_ref")

    def __init__(self, claims: dict[str, Any], permit: dict[str, Any], card_public_key: bytes | None,
                 status_ref: StatusRef | None) -> None:
        self.claims = claims
        self.permit = permit
        self.card_public_key = card_public_key
        self.status_ref = status_ref


def _int_claim(raw: dict[Any, Any], key: int, name: str, claims: dict[str, Any], required: bool) -> None:
    """One integer claim (exp, nbf, iat): copied to ``claims`` by name, or the rejection."""
    if key not in raw:
        if required:
            raise _missing("claims", name)
        return
    if not _is_int(raw[key]):
        raise _type_error("claims", name)
    claims[name] = raw[key]


def check_claims(payload: bytes, profile: str) -> _Claims:
    """WIRE-FORMAT 3 (and 6 for CARD): the claims, then the permit (or card) map,
    in one fixed order."""
    raw = cbor_decode(payload)
    if type(raw) is not dict:
        raise _malformed(codes.R_CLAIMS_NOT_MAP)
    claims: dict[str, Any] = {}
    if ISS not in raw:
        raise _missing("claims", "iss")
    if not _is_text(raw[ISS]):
        raise _type_error("claims", "iss")
    claims["iss"] = raw[ISS]
    _int_claim(raw, EXP, "exp", claims, True)
    _int_claim(raw, NBF, "nbf", claims, False)
    _int_claim(raw, IAT, "iat", claims, True)
    if CTI in raw:
        cti = raw[CTI]
        if type(cti) is not bytes or not 8 <= len(cti) <= 32:
            raise _type_error("claims", "cti")
        claims["cti"] = cti
    elif profile == codes.PROFILE_ES1:
        raise _missing("claims", "cti")            # an ES1 code is unique per token

    if profile == codes.PROFILE_CARD:
        permit, card_public_key = _check_card_map(raw)
    else:
        permit, card_public_key = _check_permit_map(raw, profile), None
    return _Claims(claims, permit, card_public_key, _check_status(raw))


def _text_keys(value: dict[Any, Any], area: str) -> dict[str, Any]:
    if not all(type(key) is str for key in value):
        raise _type_error(area, "key")              # the map has text keys only
    return value


def _text_keyed_map(raw: dict[Any, Any], claim_key: int, claim_name: str, area: str) -> dict[str, Any]:
    if claim_key not in raw:
        raise _missing("claims", claim_name)
    value = raw[claim_key]
    if type(value) is not dict:
        raise _type_error("claims", claim_name)
    return _text_keys(value, area)


def _check_permit_map(raw: dict[Any, Any], profile: str) -> dict[str, Any]:
    permit = _text_keyed_map(raw, PERMIT_CLAIM, "permit", "permit")
    required_card_fields = profile == codes.PROFILE_ES1
    for key in PERMIT_KEYS:
        if key not in permit:
            if key in ("ssn", "cn") and not required_card_fields:
                continue
            raise _missing("permit", key)
        value = permit[key]
        if key in ("pn", "n", "ssn", "cn"):
            ok = _is_text(value)
        elif key == "nat":
            ok = type(value) is str and _NATIONALITY.match(value) is not None
        elif key in ("dob", "vf"):
            ok = _is_date(value)
        elif key == "vt":
            ok = _is_date(value) and value >= permit["vf"]  # valid to on or after valid from
        elif key == "cat":
            ok = type(value) is str and value in CATEGORIES
        elif key == "emp":
            ok = type(value) is str and _CREDIT_CODE.match(value) is not None
        else:  # "v"
            ok = _is_int(value) and value >= 0
        if not ok:
            raise _type_error("permit", key)
    # Unknown keys are ignored (WIRE-FORMAT 3): the verdict carries the known ones only.
    return {key: permit[key] for key in PERMIT_KEYS if key in permit}


def _check_card_map(raw: dict[Any, Any]) -> tuple[dict[str, Any], bytes]:
    card = _text_keyed_map(raw, CARD_CLAIM, "card", "card")
    for key in CARD_KEYS:
        if key not in card:
            raise _missing("card", key)
        value = card[key]
        ok = (type(value) is bytes and len(value) == 32) if key == "cpk" else _is_text(value)
        if not ok:
            raise _type_error("card", key)
    return {"cn": card["cn"], "ssn": card["ssn"], "pn": card["pn"]}, card["cpk"]


def _check_status(raw: dict[Any, Any]) -> StatusRef | None:
    """WIRE-FORMAT 8: the optional status claim, strictly: absent is fine, but when
    there, ``{"status_list": {"idx": uint, "uri": tstr}}`` with text keys (other
    keys, such as another mechanism's, are ignored)."""
    if STATUS_CLAIM not in raw:
        return None
    status = raw[STATUS_CLAIM]
    if type(status) is not dict:
        raise _type_error("claims", "status")
    if "status_list" not in _text_keys(status, "status"):
        raise _missing("status", "status_list")
    reference = status["status_list"]
    if type(reference) is not dict:
        raise _type_error("status", "status_list")
    _text_keys(reference, "status")
    if "idx" not in reference:
        raise _missing("status", "idx")
    if not _is_int(reference["idx"]) or reference["idx"] < 0:
        raise _type_error("status", "idx")
    if "uri" not in reference:
        raise _missing("status", "uri")
    if not _is_text(reference["uri"]):
        raise _type_error("status", "uri")
    return StatusRef(reference["uri"], reference["idx"])


def check_issuer(claims: dict[str, Any], issuers: frozenset[str]) -> None:
    """WIRE-FORMAT 4: the key may sign only for the issuers the trust list gives it."""
    if claims["iss"] not in issuers:
        raise _Reject(codes.UNKNOWN_KEY, codes.R_KEY_ISSUER)


def check_times(claims: dict[str, Any], profile: str, now: int) -> None:
    """WIRE-FORMAT 3: lifetime, then not yet valid, then expired (leeway 60 s)."""
    exp, iat = claims["exp"], claims["iat"]
    if exp <= iat or (profile == codes.PROFILE_ES1 and exp - iat > ES1_MAX_LIFETIME):
        raise _malformed(codes.R_TIME_LIFETIME)
    nbf = claims.get("nbf")
    if (nbf is not None and now + LEEWAY < nbf) or now + LEEWAY < iat:
        raise _Reject(codes.NOT_YET_VALID, codes.R_TIME_NOT_YET_VALID)
    if now - LEEWAY >= exp:
        raise _Reject(codes.EXPIRED, codes.R_TIME_EXPIRED)


# --- verdicts -------------------------------------------------------------------
def _rejected(reject: _Reject, profile: str | None, found: _Claims | None = None, *,
              kid: bytes | None = None, cached: bool = False) -> Verdict:
    """The one way a failed check becomes a verdict: its code and reason, with the
    kid and what the checks before it found. ``kid``: the signature's, for the
    checks after it (their rejections carry none); else the rejection's own."""
    if kid is None:
        kid = reject.kid
    if found is None:
        return Verdict(reject.result, (reject.reason,), profile, kid=kid, cached=cached)
    return Verdict(reject.result, (reject.reason,), profile, claims=found.claims, permit=found.permit,
                   card_public_key=found.card_public_key, kid=kid, status_ref=found.status_ref, cached=cached)


def _timed(found: _Claims, profile: str, now: int, kid: bytes, cached: bool) -> Verdict:
    """The last check, the times (never cached: they depend on now), and the verdict."""
    try:
        check_times(found.claims, profile, now)
    except _Reject as reject:
        return _rejected(reject, profile, found, kid=kid, cached=cached)
    return Verdict(codes.VALID, (), profile, claims=found.claims, permit=found.permit,
                   card_public_key=found.card_public_key, kid=kid, status_ref=found.status_ref, cached=cached)


# --- the verdict cache (DESIGN "Hot path cost") -------------------------------
def _copy(verdict: Verdict, cached: bool) -> Verdict:
    """A verdict whose dicts are the caller's own: the cache keeps its copy intact."""
    return Verdict(verdict.result, verdict.reasons, verdict.profile,
                   claims=dict(verdict.claims) if verdict.claims is not None else None,
                   permit=dict(verdict.permit) if verdict.permit is not None else None,
                   card_public_key=verdict.card_public_key, kid=verdict.kid, status_ref=verdict.status_ref,
                   cached=cached)


def _from_cache(entry: CacheEntry, profile: str, now: int) -> Verdict:
    if entry.failure is not None:
        return _copy(entry.failure, True)
    assert entry.claims is not None and entry.permit is not None and entry.kid is not None
    # copies: callers must not reach the cache
    return _timed(_Claims(dict(entry.claims), dict(entry.permit), None, entry.status_ref), profile, now, entry.kid,
                  True)


# --- the checks from the COSE message on, for QR codes and card certificates alike --
def _verify_message(message: bytes, trust: TrustList, profile: str, now: int, cache_text: str | None) -> Verdict:
    """WIRE-FORMAT 2-4 (and 6): signature, claims, issuer, then the times. With
    ``cache_text`` (a WP1 text), what it gave before the times goes to the verdict cache."""
    try:
        signed = check_cose(message, trust)
    except _Reject as reject:
        return _rejected(reject, profile)
    found = None
    try:
        found = check_claims(signed.payload, profile)
        check_issuer(found.claims, signed.issuers)
    except _Reject as reject:
        verdict = _rejected(reject, profile, found, kid=signed.kid)
        if cache_text is not None:  # failed after a good signature: worth keeping
            cache_put(trust.verdict_cache, trust.cache_limit, cache_text,
                      CacheEntry(_copy(verdict, False), None, None, None, None))
        return verdict
    if cache_text is not None:
        cache_put(trust.verdict_cache, trust.cache_limit, cache_text,
                  CacheEntry(None, dict(found.claims), dict(found.permit), signed.kid, found.status_ref))
    return _timed(found, profile, now, signed.kid, False)


# --- public API ---------------------------------------------------------------
def _check_trust(trust: object) -> None:
    if not isinstance(trust, TrustList):
        raise TypeError(f"trust must be a fastpath.TrustList, not {type(trust).__name__}")


def verify_qr(text: str, trust: TrustList, now: int | None = None, *, cache: bool = True) -> Verdict:
    """Verify a QR text (WIRE-FORMAT 1-4; the status checks are the service's)."""
    _check_trust(trust)
    if now is None:
        now = int(time.time())
    if type(text) is not str:
        return Verdict(codes.MALFORMED, (codes.R_INPUT_TYPE,))
    profile = PREFIXES.get(text[:4])
    if profile is None:
        return Verdict(codes.UNSUPPORTED, (codes.R_PREFIX_UNKNOWN,))
    # ES1 codes are dynamic (one minute) and never repeat: only WP1 is worth caching.
    use_cache = cache and profile == codes.PROFILE_WP1
    if use_cache:
        entry = trust.verdict_cache.get(text)
        if entry is not None:
            return _from_cache(entry, profile, now)
    try:
        if len(text) - 4 > MAX_BASE45:
            raise _malformed(codes.R_QR_TOO_LONG)
        message = inflate_bounded(base45_decode(text[4:]))
    except _Reject as reject:
        return _rejected(reject, profile)
    return _verify_message(message, trust, profile, now, text if use_cache else None)


def _certificate_verdict(certificate: object, trust: TrustList, now: int) -> Verdict:
    profile = codes.PROFILE_CARD
    if type(certificate) is not bytes:
        return Verdict(codes.MALFORMED, (codes.R_INPUT_TYPE,), profile)
    if len(certificate) > MAX_CARD_CERTIFICATE:
        return Verdict(codes.MALFORMED, (codes.R_CARD_TOO_LONG,), profile)
    return _verify_message(certificate, trust, profile, now, None)


def verify_card_certificate(certificate: bytes, trust: TrustList, now: int | None = None) -> Verdict:
    """The certificate part of WIRE-FORMAT 6: COSE as section 2, the card claims,
    issuer and times. Never cached."""
    _check_trust(trust)
    return _certificate_verdict(certificate, trust, int(time.time()) if now is None else now)


def check_card_signature(card_public_key: bytes, challenge: bytes, signature: bytes) -> str | None:
    """None when the card signed ``b"SSC-AUTH-1" + challenge``, else the reason."""
    if type(challenge) is not bytes or len(challenge) != 32:
        return codes.R_CARD_CHALLENGE
    if type(signature) is not bytes or len(signature) != 64:
        return codes.R_CARD_SIGNATURE_LENGTH
    if type(card_public_key) is not bytes or len(card_public_key) != 32:
        return codes.R_CARD_SIGNATURE
    if not ed25519_verify(card_public_key, signature, CARD_AUTH_DOMAIN + challenge):
        return codes.R_CARD_SIGNATURE
    return None


_CARD_REASON_RESULTS = {
    codes.R_CARD_CHALLENGE: codes.CHALLENGE_INVALID,
    codes.R_CARD_SIGNATURE_LENGTH: codes.MALFORMED,
    codes.R_CARD_SIGNATURE: codes.BAD_SIGNATURE,
}


def verify_card(certificate: bytes, challenge: bytes, signature: bytes, trust: TrustList,
                now: int | None = None) -> Verdict:
    """WIRE-FORMAT 6 without the challenge store and the status: the certificate,
    then the card's signature over the challenge."""
    verdict = verify_card_certificate(certificate, trust, now)
    if not verdict.ok:
        return verdict
    assert verdict.card_public_key is not None
    reason = check_card_signature(verdict.card_public_key, challenge, signature)
    if reason is not None:
        verdict.result = _CARD_REASON_RESULTS[reason]
        verdict.reasons = (reason,)
    return verdict
