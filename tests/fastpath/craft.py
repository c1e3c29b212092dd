"""Crafting QR codes and card certificates for the fastpath tests, well-formed or not.

Independent of the code under test: cbor2 encodes, PyNaCl signs, zlib
compresses, and base45 is written here from RFC 9285. Every layer can be
replaced by raw bytes, so that a test can build exactly the malformation it
is about (alg in the unprotected map, crit, wrong tags, 5-element arrays,
63-byte signatures, duplicate keys, indefinite lengths, ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2
from nacl.signing import SigningKey

NOW = 1767225600  # 2026-01-01T00:00:00Z, the time of the public vectors

_DROP = object()
DROP: Any = _DROP  # claims(iss=DROP), jwk(alg=DROP): leave the member out

BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

PERMIT: dict[str, Any] = {
    "pn": "WP3100002025000123",
    "n": "DOE, JANE",
    "nat": "CAN",
    "dob": "1988-02-29",
    "cat": "B",
    "emp": "91310000MA1FL0AB2C",
    "vf": "2025-03-01",
    "vt": "2027-02-28",
    "v": 3,
    "ssn": "310000198802290021",
    "cn": "S31000012345678",
}


# --- encodings ----------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def base45_encode(data: bytes) -> str:
    """RFC 9285 4: two bytes to three characters, a final byte to two."""
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = n % 45, n // 45
        d, e = n % 45, n // 45
        out += [BASE45_ALPHABET[c], BASE45_ALPHABET[d], BASE45_ALPHABET[e]]
    if len(data) % 2:
        c, d = data[-1] % 45, data[-1] // 45
        out += [BASE45_ALPHABET[c], BASE45_ALPHABET[d]]
    return "".join(out)


def qr(message: bytes, prefix: str = "WP1:", *, level: int = 9) -> str:
    """PREFIX || base45(zlib(message))."""
    return prefix + base45_encode(zlib.compress(message, level))


def head(major: int, argument: int, size: int | None = None) -> bytes:
    """A CBOR head, in its shortest form unless ``size`` (0, 1, 2, 4, 8 argument bytes) forces one."""
    if size is None:
        size = 0 if argument < 24 else 1 if argument < 0x100 else 2 if argument < 0x10000 \
            else 4 if argument < 0x100000000 else 8
    if size == 0:
        return bytes((major << 5 | argument,))
    info = {1: 24, 2: 25, 4: 26, 8: 27}[size]
    return bytes((major << 5 | info,)) + argument.to_bytes(size, "big")


def bstr(data: bytes) -> bytes:
    return head(2, len(data)) + data


def tstr(text: str) -> bytes:
    raw = text.encode("utf-8")
    return head(3, len(raw)) + raw


def raw_map(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A map from already encoded keys and values: duplicates and any order allowed."""
    pairs = list(pairs)
    return head(5, len(pairs)) + b"".join(k + v for k, v in pairs)


def enc(value: Any) -> bytes:
    return cbor2.dumps(value)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


# --- keys and trust lists -----------------------------------------------------
@dataclass
class Issuer:
    """An issuer key for tests (seeded: deterministic)."""

    name: str
    issuers: list[str] = field(default_factory=lambda: ["CN-310000", "CN-110000"])
    status: str = "active"
    use: str = "sig"  # "status": a Status List signer (WIRE-FORMAT 8)

    def __post_init__(self) -> None:
        self.signing_key = SigningKey(hashlib.sha256(b"fastpath-tests:" + self.name.encode()).digest())
        self.public_key = bytes(self.signing_key.verify_key)
        self.kid = hashlib.sha256(self.public_key).digest()[:8]

    def jwk(self, **overrides: Any) -> dict[str, Any]:
        key = {"kty": "OKP", "crv": "Ed25519", "x": b64url(self.public_key), "kid": b64url(self.kid),
               "alg": "EdDSA", "use": self.use, "iss": list(self.issuers), "status": self.status}
        key.update(overrides)
        return {k: v for k, v in key.items() if v is not _DROP}

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


def jwks(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


# --- tokens -------------------------------------------------------------------
def claims(profile: str = "WP1", *, iat: Any = NOW - 3600, exp: Any = None,
           permit: dict[str, Any] | None = None, **extra: Any) -> dict[int, Any]:
    """A valid claims map for the profile; ``extra`` adds or replaces claims by key
    name (iss, exp, nbf, iat, cti, status) — ``DROP`` removes one."""
    base_iat = NOW - 3600 if iat is _DROP else iat
    if exp is None:
        exp = base_iat + 60 if profile == "ES1" else base_iat + 3 * 365 * 86400
    names = {"iss": 1, "exp": 4, "nbf": 5, "iat": 6, "cti": 7, "status": 65535}
    result: dict[int, Any] = {1: "CN-310000", 4: exp, 6: iat}
    if profile == "ES1":
        result[7] = b"cti-0123456789ab"
    if profile == "CARD":
        result[-70002] = {"cn": PERMIT["cn"], "ssn": PERMIT["ssn"], "pn": PERMIT["pn"],
                          "cpk": bytes(card_key().verify_key)}
    else:
        result[-70001] = dict(PERMIT) if permit is None else permit
    for name, value in extra.items():
        result[names[name]] = value
    return {k: v for k, v in result.items() if v is not _DROP}


def card_key() -> SigningKey:
    return SigningKey(hashlib.sha256(b"fastpath-tests:card").digest())


def card_sign(challenge: bytes, key: SigningKey | None = None, domain: bytes = b"SSC-AUTH-1") -> bytes:
    return (key or card_key()).sign(domain + challenge).signature


def sign1(issuer: Issuer, payload: Any = None, *, profile: str = "WP1",
          protected: dict[int, Any] | bytes | None = None, unprotected: dict[int, Any] | bytes | None = None,
          tag: bool = True, signature: bytes | None = None, signer: Issuer | None = None) -> bytes:
    """A COSE_Sign1 message. ``payload``: a claims dict (encoded with cbor2) or raw
    bytes; ``protected``/``unprotected``: dicts or raw encoded bytes; the
    signature is computed over the bytes as given unless ``signature`` replaces it."""
    if payload is None:
        payload = claims(profile)
    payload_bytes = payload if isinstance(payload, bytes) else enc(payload)
    if protected is None:
        protected = {1: -8, 4: issuer.kid}
    protected_bytes = protected if isinstance(protected, bytes) else enc(protected)
    unprotected_bytes = enc(unprotected or {}) if not isinstance(unprotected, bytes) else unprotected
    if signature is None:
        signature = (signer or issuer).sign(sig_structure(protected_bytes, payload_bytes))
    body = head(4, 4) + bstr(protected_bytes) + unprotected_bytes + bstr(payload_bytes) + bstr(signature)
    return (b"\xd2" + body) if tag else body


def wp1(issuer: Issuer, **claim_overrides: Any) -> str:
    return qr(sign1(issuer, claims("WP1", **claim_overrides)), "WP1:")


def es1(issuer: Issuer, **claim_overrides: Any) -> str:
    return qr(sign1(issuer, claims("ES1", **claim_overrides)), "ES1:")


# The issuers of the test trust list, and one it does not know.
ACTIVE = Issuer("active")
RETIRED = Issuer("retired", status="retired")
REVOKED = Issuer("revoked", status="revoked")
REGIONAL = Issuer("regional", issuers=["CN-440000"])  # may sign for Guangdong only
STRANGER = Issuer("stranger")                          # not in the trust list
# Status List signers (WIRE-FORMAT 8): trusted for Status Lists only.
STATUS_SIGNER = Issuer("status-signer", issuers=["CN-MOHRSS"], use="status")
STATUS_RETIRED = Issuer("status-retired", issuers=["CN-MOHRSS"], status="retired", use="status")
STATUS_REVOKED = Issuer("status-revoked", issuers=["CN-MOHRSS"], status="revoked", use="status")

PERMITS_LIST_URI = "https://pv.example/v1/status-lists/permits"
CARDS_LIST_URI = "https://pv.example/v1/status-lists/cards"


def status_claim(idx: Any = 7, uri: Any = PERMITS_LIST_URI) -> dict[str, Any]:
    """The status claim (65535) of WIRE-FORMAT 8: entry ``idx`` of the list at ``uri``."""
    return {"status_list": {"idx": idx, "uri": uri}}


def trust_list_json() -> str:
    return jwks(ACTIVE.jwk(), RETIRED.jwk(), REVOKED.jwk(), REGIONAL.jwk(), STATUS_SIGNER.jwk(),
                STATUS_RETIRED.jwk(), STATUS_REVOKED.jwk())


def base45_decode(text: str) -> bytes | None:
    """RFC 9285 decoding for test oracles: None where the text is not base45."""
    try:
        values = [BASE45_ALPHABET.index(c) for c in text]
    except ValueError:
        return None
    if len(values) % 3 == 1:
        return None
    out = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i:i + 3]
        n = sum(v * 45**k for k, v in enumerate(chunk))
        if len(chunk) == 3:
            if n > 0xFFFF:
                return None
            out += n.to_bytes(2, "big")
        else:
            if n > 0xFF:
                return None
            out.append(n)
    return bytes(out)


def message_of(text: str) -> bytes | None:
    """The COSE message inside a QR text as any zlib reader sees it, or None."""
    data = base45_decode(text[4:])
    if data is None:
        return None
    try:
        return zlib.decompress(data)
    except zlib.error:
        return None


# --- Status List Tokens (WIRE-FORMAT 8), written here from the draft's text -------
STATUS_LIST_TYP = "application/statuslist+cwt"


def pack(entries: Iterable[int], bits: int) -> bytes:
    """The bit array of the draft: entry i at bit (i * bits) % 8 of byte (i * bits) // 8, LSB first."""
    out = bytearray()
    for i, value in enumerate(entries):
        assert 0 <= value < 1 << bits
        position = i * bits
        if position // 8 == len(out):
            out.append(0)
        out[position // 8] |= value << (position % 8)
    return bytes(out)


def status_list_claims(*, bits: Any = 2, lst: Any = None, sub: Any = PERMITS_LIST_URI, iat: Any = NOW - 60,
                       exp: Any = None, ttl: Any = 300, status_list: Any = None) -> dict[int, Any]:
    """The claims of a Status List Token: ``lst`` is the compressed list (default: 8
    entries, entry 3 = 1), ``status_list`` replaces the whole map; ``DROP`` removes one."""
    if status_list is None:
        if lst is None:
            lst = zlib.compress(pack([0, 0, 0, 1, 0, 0, 0, 0], 2 if bits is DROP else bits), 9)
        status_list = {k: v for k, v in {"bits": bits, "lst": lst}.items() if v is not _DROP}
    if exp is None:
        exp = (NOW if iat is _DROP else iat) + 3600
    result = {2: sub, 6: iat, 4: exp, 65534: ttl, 65533: status_list}
    return {k: v for k, v in result.items() if v is not _DROP}


def status_list_token(issuer: Issuer | None = None, payload: Any = None, *, typ: Any = STATUS_LIST_TYP,
                      **options: Any) -> bytes:
    """A Status List Token under ``issuer``'s kid (default STATUS_SIGNER); ``options`` go to
    :func:`sign1` (protected, unprotected, signature, tag, signer: who really signs)."""
    issuer = issuer or STATUS_SIGNER
    if payload is None:
        payload = status_list_claims()
    protected = options.pop("protected", None)
    if protected is None:
        protected = {1: -8, 4: issuer.kid}
        if typ is not _DROP:
            protected[16] = typ
    return sign1(issuer, payload, protected=protected, **options)

