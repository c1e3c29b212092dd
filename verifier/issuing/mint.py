"""Minting: WP1 and ES1 QR codes and card certificates (WIRE-FORMAT 1-3, 6 and 9).

Each is signed with the issuer key given, Ed25519 or SM2 with SM3 (the key's
algorithm names the header's ``alg``). A card certificate may be SM2-signed too;
the card's own key, which answers challenges, stays Ed25519 (WIRE-FORMAT 6).

The layers, each usable alone (tests build malformed variants from them):
``sign_cose`` (claims -> COSE_Sign1 bytes), ``encode_qr`` (prefix + base45(zlib)),
``base45_encode``; and the profiles on top: ``mint_wp1``, ``mint_es1``,
``mint_card_certificate``.

The profile functions refuse to mint what a verifier would reject (a permit
field of the wrong form, an ES1 lifetime over 300 s, exp not after iat) with a
MintError; ``allow_invalid=True`` turns those checks off for negative tests.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any, Final

from fastpath._sm2 import ALG_EDDSA, ALG_SM2_SM3
from verifier.index.records import PermitRecord
from verifier.issuing.cbor import Tag, dumps
from verifier.issuing.keys import IssuerKey

__all__ = [
    "OMIT",
    "MintError",
    "COSE_SIGN1_TAG",
    "ALG_EDDSA",
    "ALG_SM2_SM3",
    "PERMIT_CLAIM",
    "CARD_CLAIM",
    "STATUS_CLAIM",
    "status_claim",
    "CHINA_STANDARD_TIME",
    "ES1_MAX_LIFETIME",
    "base45_encode",
    "encode_qr",
    "sign_cose",
    "permit_map",
    "card_map",
    "end_of_day",
    "mint_wp1",
    "mint_es1",
    "mint_card_certificate",
]

COSE_SIGN1_TAG: Final = 18
# COSE header labels (RFC 9052) and CWT claim keys (RFC 8392)
HEADER_ALG: Final = 1
HEADER_KID: Final = 4
CLAIM_ISS: Final = 1
CLAIM_EXP: Final = 4
CLAIM_NBF: Final = 5
CLAIM_IAT: Final = 6
CLAIM_CTI: Final = 7
PERMIT_CLAIM: Final = -70001  # WIRE-FORMAT 3
CARD_CLAIM: Final = -70002    # WIRE-FORMAT 6
STATUS_CLAIM: Final = 65535   # WIRE-FORMAT 8: {"status_list": {"idx": uint, "uri": tstr}}
CHINA_STANDARD_TIME: Final = _dt.timezone(_dt.timedelta(hours=8), "CST")
ES1_MAX_LIFETIME: Final = 300  # WIRE-FORMAT 3
# WIRE-FORMAT 3: the permit map's keys, in the table's order
PERMIT_KEYS: Final = ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v", "ssn", "cn")
CARD_KEYS: Final = ("cn", "ssn", "pn")

BASE45_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


class MintError(ValueError):
    """Refused to mint: the input would make a code that verifiers reject."""


class _Omit:
    __slots__ = ()

    def __repr__(self) -> str:
        return "OMIT"


OMIT: Final = _Omit()
"""In ``protected_extra``: drop that label from the protected header (e.g. alg, for negative tests)."""


# --- the encodings -----------------------------------------------------------


# every value below 45 * 45 as its two base45 characters (low digit first): a
# two-byte group is then one table look-up plus its high digit
_BASE45_PAIRS: Final = tuple(BASE45_ALPHABET[i % 45] + BASE45_ALPHABET[i // 45] for i in range(45 * 45))


def base45_encode(data: bytes) -> str:
    """RFC 9285 base45: two bytes to three characters, a last lone byte to two."""
    data = bytes(data)
    full = len(data) // 2
    pairs, alphabet = _BASE45_PAIRS, BASE45_ALPHABET
    text = "".join([pairs[n % 2025] + alphabet[n // 2025] for n in struct.unpack(f">{full}H", data[:2 * full])])
    if len(data) % 2:
        text += pairs[data[-1]]  # one byte: two characters
    return text


def encode_qr(prefix: str, cose_bytes: bytes) -> str:
    """QR text = prefix || base45(zlib(COSE_Sign1)) (WIRE-FORMAT 1), zlib at level 9.

    ``prefix`` is ``"WP1"`` or ``"WP1:"`` (a missing colon is added); any other
    text is taken as given, for negative tests.
    """
    if not prefix.endswith(":"):
        prefix += ":"
    return prefix + base45_encode(zlib.compress(bytes(cose_bytes), 9))


def sign_cose(
    key: IssuerKey,
    payload_claims: Mapping[Any, Any] | bytes,
    *,
    protected_extra: Mapping[int | str, Any] | None = None,
    unprotected: Mapping[int | str, Any] | None = None,
    tag: bool = True,
) -> bytes:
    """A COSE_Sign1 (WIRE-FORMAT 2) over ``payload_claims`` signed by ``key``.

    The protected header is ``{1: alg, 4: kid}`` (alg: -8 for an Ed25519 key, -65537
    for an SM2 one, WIRE-FORMAT 9) updated with ``protected_extra`` (a value of
    ``OMIT`` removes the label). ``payload_claims`` is a claims map,
    encoded canonically, or ready-made payload bytes. With ``tag`` the array is
    wrapped in CBOR tag 18.
    """
    protected_map: dict[Any, Any] = {HEADER_ALG: key.cose_alg, HEADER_KID: key.kid}
    for label, value in (protected_extra or {}).items():
        if value is OMIT:
            protected_map.pop(label, None)
        else:
            protected_map[label] = value
    protected = dumps(protected_map)
    if isinstance(payload_claims, (bytes, bytearray, memoryview)):
        payload = bytes(payload_claims)
    else:
        payload = dumps(dict(payload_claims))
    # WIRE-FORMAT 2: Sig_structure = ["Signature1", protected, h'' (external_aad), payload]
    signature = key.sign(dumps(["Signature1", protected, b"", payload]))
    message: Any = [protected, dict(unprotected or {}), payload, signature]
    return dumps(Tag(COSE_SIGN1_TAG, message) if tag else message)


# --- the claims --------------------------------------------------------------

_NAT = re.compile(r"[A-Z]{3}")
_EMP = re.compile(r"[0-9A-Z]{18}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(value: object, name: str) -> _dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise MintError(f"permit {name} is a date YYYY-MM-DD, not {value!r}")
    try:
        return _dt.date.fromisoformat(value)
    except ValueError as exc:
        raise MintError(f"permit {name} is not a calendar date: {value!r}") from exc


def _check_permit(permit: Mapping[str, Any], profile: str) -> None:
    """The checks of WIRE-FORMAT 3 on the permit map, in the table's order."""
    for name in ("pn", "n"):
        if not isinstance(permit.get(name), str) or not permit[name]:
            raise MintError(f"permit {name} is a non-empty string")
    if not isinstance(permit.get("nat"), str) or not _NAT.fullmatch(permit["nat"]):
        raise MintError("permit nat is an ISO 3166-1 alpha-3 code (three capital letters)")
    _date(permit.get("dob"), "dob")
    if permit.get("cat") not in ("A", "B", "C"):
        raise MintError("permit cat is A, B or C")
    if not isinstance(permit.get("emp"), str) or not _EMP.fullmatch(permit["emp"]):
        raise MintError("permit emp is 18 characters of 0-9 and A-Z")
    if _date(permit.get("vt"), "vt") < _date(permit.get("vf"), "vf"):
        raise MintError("permit vt is before vf")
    v = permit.get("v")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise MintError("permit v is an unsigned integer")
    for name in ("ssn", "cn"):
        value = permit.get(name)
        if value is None:
            if profile == "ES1":
                raise MintError(f"an ES1 code needs the permit's {name}")
        elif not isinstance(value, str) or not value:
            raise MintError(f"permit {name} is a non-empty string")


def permit_map(permit: Mapping[str, Any] | PermitRecord) -> dict[str, Any]:
    """The -70001 map (WIRE-FORMAT 3): exactly its keys; ssn and cn only when present.

    From a PermitRecord, ``cn`` is the active card's number; other record fields
    (status, cards) are not part of the code.
    """
    if isinstance(permit, PermitRecord):
        source: Mapping[str, Any] = {name: getattr(permit, name) for name in PERMIT_KEYS}
    elif isinstance(permit, Mapping):
        source = permit
    else:
        raise TypeError("permit is a PermitRecord or a mapping")
    return {name: source[name] for name in PERMIT_KEYS if source.get(name) is not None}


def card_map(card: Mapping[str, Any] | PermitRecord, card_public_key: bytes) -> dict[str, Any]:
    """The -70002 map (WIRE-FORMAT 6): cn, ssn, pn and cpk."""
    if isinstance(card, PermitRecord):
        source: Mapping[str, Any] = {"cn": card.cn, "ssn": card.ssn, "pn": card.pn}
    elif isinstance(card, Mapping):
        source = card
    else:
        raise TypeError("card is a PermitRecord or a mapping with cn, ssn and pn")
    result: dict[str, Any] = {name: source.get(name) for name in CARD_KEYS}
    result["cpk"] = bytes(card_public_key)
    return result


def end_of_day(date: str) -> int:
    """The epoch second at which a permit's last day (inclusive, UTC+8) has ended."""
    day = _date(date, "vt")
    midnight = _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time(), CHINA_STANDARD_TIME)
    return int(midnight.timestamp())


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MintError(f"{name} is an integer (epoch seconds), not {value!r}")
    return value


def _cti(cti: bytes | None) -> bytes | None:
    if cti is not None and (not isinstance(cti, bytes) or not 8 <= len(cti) <= 32):
        raise MintError("cti is 8 to 32 bytes")
    return cti


def status_claim(status: tuple[str, int]) -> dict[str, Any]:
    """The value of the status claim (65535, WIRE-FORMAT 8) for entry ``idx`` of the list at ``uri``."""
    uri, idx = status
    if not isinstance(uri, str) or not uri:
        raise MintError("a status list's uri is a non-empty string")
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise MintError(f"a status list index is an unsigned integer, not {idx!r}")
    return {"status_list": {"idx": idx, "uri": uri}}


def _claims(
    key: IssuerKey,
    iss: str | None,
    iat: int,
    exp: int,
    nbf: int | None,
    cti: bytes | None,
    extra: tuple[int, Any],
    status: tuple[str, int] | None = None,
) -> dict[int, Any]:
    claims: dict[int, Any] = {
        CLAIM_ISS: key.issuers[0] if iss is None else iss,
        CLAIM_EXP: exp,
        CLAIM_IAT: iat,
    }
    if nbf is not None:
        claims[CLAIM_NBF] = nbf
    if cti is not None:
        claims[CLAIM_CTI] = cti
    claims[extra[0]] = extra[1]
    if status is not None:
        claims[STATUS_CLAIM] = status_claim(status)
    return claims


def _check_issuer(key: IssuerKey, iss: str | None) -> None:
    if iss is not None and (not isinstance(iss, str) or not iss):
        raise MintError("iss is a non-empty string")
    if iss is not None and iss not in key.issuers:
        raise MintError(f"key {key.kid_text} may not sign for {iss!r} (it signs for {list(key.issuers)})")


# --- the profiles ------------------------------------------------------------


def mint_wp1(
    key: IssuerKey,
    permit: Mapping[str, Any] | PermitRecord,
    *,
    iat: int,
    exp: int | None = None,
    nbf: int | None = None,
    cti: bytes | None = None,
    iss: str | None = None,
    status: tuple[str, int] | None = None,
    allow_invalid: bool = False,
) -> str:
    """A WP1 code (work-permit notice). ``exp`` defaults to the end of the permit's
    ``vt`` day in UTC+8; ``iss`` to the key's first issuer; no cti unless given;
    ``status``: ``(uri, idx)``, its entry in the ``permits`` Status List (claim 65535)."""
    body = permit_map(permit)
    if not allow_invalid:
        _check_permit(body, "WP1")
    if exp is None:  # with allow_invalid and no usable vt, pass exp
        exp = end_of_day(body.get("vt"))  # type: ignore[arg-type]
    if not allow_invalid:
        _check_issuer(key, iss)
        _int(iat, "iat")
        _int(exp, "exp")
        if nbf is not None:
            _int(nbf, "nbf")
        _cti(cti)
        if exp <= iat:  # WIRE-FORMAT 3: MALFORMED (time.lifetime) at any verifier
            raise MintError(f"exp {exp} is not after iat {iat} (has the permit ended?)")
    claims = _claims(key, iss, iat, exp, nbf, cti, (PERMIT_CLAIM, body), status)
    return encode_qr("WP1:", sign_cose(key, claims))


def mint_es1(
    key: IssuerKey,
    permit: Mapping[str, Any] | PermitRecord,
    *,
    iat: int,
    lifetime: int = 60,
    cti: bytes | None = None,
    nbf: int | None = None,
    iss: str | None = None,
    status: tuple[str, int] | None = None,
    allow_invalid: bool = False,
) -> str:
    """An ES1 code (the e-card's dynamic code): exp = iat + lifetime (at most 300 s),
    a random 16-byte cti unless given; ``status`` as for :func:`mint_wp1`."""
    body = permit_map(permit)
    if cti is None:
        cti = os.urandom(16)
    if not allow_invalid:
        _check_permit(body, "ES1")
        _check_issuer(key, iss)
        _int(iat, "iat")
        _int(lifetime, "lifetime")
        if nbf is not None:
            _int(nbf, "nbf")
        _cti(cti)
        if not 0 < lifetime <= ES1_MAX_LIFETIME:  # WIRE-FORMAT 3
            raise MintError(f"an ES1 lifetime is 1 to {ES1_MAX_LIFETIME} s, not {lifetime}")
    claims = _claims(key, iss, iat, iat + lifetime, nbf, cti, (PERMIT_CLAIM, body), status)
    return encode_qr("ES1:", sign_cose(key, claims))


def mint_card_certificate(
    key: IssuerKey,
    card: Mapping[str, Any] | PermitRecord,
    card_public_key: bytes,
    *,
    iat: int,
    exp: int,
    iss: str | None = None,
    status: tuple[str, int] | None = None,
    allow_invalid: bool = False,
) -> bytes:
    """A card certificate (WIRE-FORMAT 6): raw COSE_Sign1 bytes, tag 18, claims
    iss, exp (card expiry), iat and -70002 {cn, ssn, pn, cpk}; ``status``:
    ``(uri, idx)``, the card's entry in the ``cards`` Status List (claim 65535)."""
    body = card_map(card, card_public_key)
    if not allow_invalid:
        for name in CARD_KEYS:
            if not isinstance(body[name], str) or not body[name]:
                raise MintError(f"card {name} is a non-empty string")
        if len(body["cpk"]) != 32:
            raise MintError("the card's public key is 32 bytes")
        _check_issuer(key, iss)
        if _int(exp, "exp") <= _int(iat, "iat"):
            raise MintError(f"exp {exp} is not after iat {iat}")
    claims = _claims(key, iss, iat, exp, None, None, (CARD_CLAIM, body), status)
    return sign_cose(key, claims)
