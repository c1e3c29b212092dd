"""The trust list (WIRE-FORMAT 4): a JWK Set of issuer keys, Ed25519 (``OKP``) or SM2
(``EC``, WIRE-FORMAT 9), and of the keys that sign Status Lists (WIRE-FORMAT 8,
``use`` "status").

Loaded once, validated as a whole (one bad key refuses the list), then read by
both twins through two documented attributes: :attr:`TrustList.issuer_keys` (the
kid table they look keys up in) and :attr:`TrustList.verdict_cache` (which
belongs to one list, so that a new list starts with an empty cache).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

from ._sm2 import ALG_EDDSA, ALG_SM2_SM3, DEFAULT_USER_ID, JWK_ALG_SM2_SM3, MAX_USER_ID, Sm2PublicKey, \
    load_public_key
from .errors import TrustListError

STATUSES = frozenset({"active", "retired", "revoked"})
USE_SIG = "sig"        # a permit issuer's key: WP1/ES1 codes and card certificates (also when use is absent)
USE_STATUS = "status"  # a Status List signer's key (WIRE-FORMAT 8)
USES = frozenset({USE_SIG, USE_STATUS})
DEFAULT_CACHE_LIMIT = 65536

_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One key of the trust list."""

    kid: bytes            # 8 bytes: SHA-256(public_key)[:8]
    public_key: bytes     # 32-byte raw Ed25519 key, or SM2's 65-byte point 0x04 || x || y
    status: str           # active | retired | revoked
    issuers: frozenset[str]  # the iss values this key may sign for
    use: str = USE_SIG    # sig: permit tokens and card certificates; status: Status Lists only
    alg: int = ALG_EDDSA  # the COSE alg its signatures carry: -8 (EdDSA) or ALG_SM2_SM3
    user_id: bytes | None = None  # SM2 only: the key's distid, or the default 1234567812345678
    sm2: Sm2PublicKey | None = field(default=None, compare=False, repr=False)  # SM2 only: what verifies

    @property
    def verifying_key(self) -> bytes | Sm2PublicKey:
        """What the twins verify with (the first member of a key table's entry):
        the 32 raw bytes of an Ed25519 key, the validated key of an SM2 one."""
        return self.public_key if self.sm2 is None else self.sm2


def b64url_decode_strict(text: object) -> bytes | None:
    """Unpadded base64url (RFC 7515 2) or None: no padding, no other characters,
    and no non-zero trailing bits (the encoding must be the canonical one)."""
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None  # trailing bits set: another text for the same bytes
    return raw


def _reject_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise TrustListError(f"trust list: duplicate JSON member {name!r}")
        result[name] = value
    return result


def _reject_constant(name: str) -> Any:
    raise TrustListError(f"trust list: {name} is not JSON")


def _parse_json(data: bytes | str) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TrustListError(f"trust list: not UTF-8 ({exc.reason})") from None
    if not isinstance(data, str):
        raise TrustListError(f"trust list: expected JSON text, got {type(data).__name__}")
    try:
        # Stricter than plain json.loads: duplicate members and NaN/Infinity refused.
        return json.loads(data, object_pairs_hook=_reject_duplicate_members,
                          parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise TrustListError(f"trust list: not JSON ({exc})") from None
    except RecursionError:
        raise TrustListError("trust list: not JSON (nested too deeply)") from None


def _parse_key(index: int, jwk: Any, seen: dict[bytes, int]) -> TrustedKey:
    kid_text = jwk.get("kid") if isinstance(jwk, dict) else None
    where = f"trust list key {index} (kid {kid_text!r})"

    def refuse(reason: str) -> TrustListError:
        return TrustListError(f"{where}: {reason}")

    if not isinstance(jwk, dict):
        raise refuse("not a JSON object")
    kty = jwk.get("kty")
    if kty not in ("OKP", "EC"):
        raise refuse(f"kty must be 'OKP' (Ed25519) or 'EC' (SM2), got {kty!r}")
    use = jwk.get("use", USE_SIG)
    if type(use) is not str or use not in USES:
        raise refuse(f"use must be 'sig' or 'status' when present, got {use!r}")
    if "d" in jwk:
        # A private key published in a trust list is an incident, not a key to trust.
        raise refuse("holds a private key ('d'): a trust list carries public keys only")
    if kty == "OKP":
        public_key, alg, sm2 = _parse_okp(jwk, refuse), ALG_EDDSA, None
        kid_over = "x"
    else:
        sm2 = _parse_sm2(jwk, refuse)
        public_key, alg = sm2.point, ALG_SM2_SM3
        kid_over = "0x04 || x || y"
    kid = b64url_decode_strict(kid_text)
    if kid is None or len(kid) != 8:
        raise refuse("kid is not the unpadded base64url of 8 bytes")
    if kid != hashlib.sha256(public_key).digest()[:8]:
        raise refuse(f"kid does not match the first 8 bytes of SHA-256({kid_over})")
    if kid in seen:
        raise refuse(f"duplicate kid (also key {seen[kid]})")
    issuers = jwk.get("iss")
    if (not isinstance(issuers, list) or not issuers
            or not all(isinstance(i, str) and i for i in issuers)):
        raise refuse("iss must be a non-empty list of non-empty strings")
    status = jwk.get("status")
    if type(status) is not str or status not in STATUSES:  # a list or a dict is no status
        raise refuse(f"status must be one of active, retired, revoked, got {status!r}")
    seen[kid] = index
    return TrustedKey(kid=kid, public_key=public_key, status=status, issuers=frozenset(issuers), use=use,
                      alg=alg, user_id=None if sm2 is None else sm2.user_id, sm2=sm2)


def _parse_okp(jwk: dict[str, Any], refuse: Any) -> bytes:
    """An Ed25519 key (RFC 8037): its 32 raw bytes, a valid point of large order."""
    if jwk.get("crv") != "Ed25519":
        raise refuse(f"crv must be 'Ed25519' for kty 'OKP', got {jwk.get('crv')!r}")
    if "alg" in jwk and jwk["alg"] != "EdDSA":
        raise refuse(f"alg must be 'EdDSA' when present, got {jwk['alg']!r}")
    public_key = b64url_decode_strict(jwk.get("x"))
    if public_key is None or len(public_key) != 32:
        raise refuse("x is not the unpadded base64url of a 32-byte Ed25519 key")
    # WIRE-FORMAT 4: small-order and non-canonical points refuse the whole list.
    if not crypto_core_ed25519_is_valid_point(public_key):
        raise refuse("x is not a valid Ed25519 point of large order")
    return public_key


def _parse_sm2(jwk: dict[str, Any], refuse: Any) -> Sm2PublicKey:
    """An SM2 key (WIRE-FORMAT 9): x and y of 32 bytes each, validated by gmalg and
    libcrypto; the user id from ``distid`` (unpadded base64url), else the default."""
    if jwk.get("crv") != "SM2":
        raise refuse(f"crv must be 'SM2' for kty 'EC', got {jwk.get('crv')!r}")
    if "alg" in jwk and jwk["alg"] != JWK_ALG_SM2_SM3:
        raise refuse(f"alg must be {JWK_ALG_SM2_SM3!r} when present, got {jwk['alg']!r}")
    x = b64url_decode_strict(jwk.get("x"))
    y = b64url_decode_strict(jwk.get("y"))
    if x is None or len(x) != 32 or y is None or len(y) != 32:
        raise refuse("x and y are not the unpadded base64url of 32 bytes each (RFC 7518 6.2.1)")
    if "distid" in jwk:
        user_id = b64url_decode_strict(jwk["distid"])
        if user_id is None or not 1 <= len(user_id) <= MAX_USER_ID:
            raise refuse(f"distid is not the unpadded base64url of 1 to {MAX_USER_ID} bytes")
    else:
        user_id = DEFAULT_USER_ID
    try:
        return load_public_key(x, y, user_id)
    except ValueError as exc:
        # WIRE-FORMAT 9: off the curve, at infinity, a coordinate not below p: refused as a whole.
        raise refuse(str(exc)) from None


class TrustList:
    """A validated trust list. Build it with :meth:`from_jwks`; it does not change
    afterwards (a new list is a new object, with its own empty verdict cache).

    - ``version``: 16 hex digits of SHA-256 over the canonical JSON of its keys.
    - ``keys``: every key by kid (:class:`TrustedKey`), read-only.
    - ``cache_limit``: the verdict cache's bound (0: no cache).
    - ``issuer_keys``: the table both twins look kids up in, kid -> (verifying
      key, status, issuers), of the keys with ``use`` "sig" (or none). The
      verifying key is the 32-byte raw key (bytes) of an Ed25519 key, or the
      :class:`~fastpath._sm2.Sm2PublicKey` of an SM2 one: its type is the key's
      algorithm. A plain dict, because the compiled twin looks it up with
      ``PyDict_GetItem``: read it, never change it.
    - ``status_keys``: the same table of the keys with ``use`` "status", which
      verify Status List Tokens and nothing else (and the issuer keys never
      verify a Status List).
    - ``verdict_cache``: the verdict cache of this list, WP1 text ->
      ``fastpath._cache.CacheEntry``, written only through
      ``fastpath._cache.cache_put``.

    The two tables are plain attributes rather than properties: a property is a
    Python call, about a fifth of the instructions of a verdict-cache hit.
    """

    __slots__ = ("version", "keys", "cache_limit", "issuer_keys", "status_keys", "verdict_cache", "_jwks")

    version: str
    keys: Mapping[bytes, TrustedKey]
    cache_limit: int
    issuer_keys: dict[bytes, tuple[bytes | Sm2PublicKey, str, frozenset[str]]]
    status_keys: dict[bytes, tuple[bytes | Sm2PublicKey, str, frozenset[str]]]
    verdict_cache: dict[str, Any]
    _jwks: dict[str, Any]

    def __init__(self, keys: list[TrustedKey], jwks: dict[str, Any], version: str,
                 cache_limit: int = DEFAULT_CACHE_LIMIT) -> None:
        self.keys = types.MappingProxyType({key.kid: key for key in keys})
        self.issuer_keys = {key.kid: (key.verifying_key, key.status, key.issuers) for key in keys
                            if key.use == USE_SIG}
        self.status_keys = {key.kid: (key.verifying_key, key.status, key.issuers) for key in keys
                            if key.use == USE_STATUS}
        self.verdict_cache = {}
        self._jwks = jwks
        self.version = version
        self.cache_limit = cache_limit

    @classmethod
    def from_jwks(cls, data: bytes | str, *, cache_limit: int = DEFAULT_CACHE_LIMIT) -> TrustList:
        """Load and validate a JWK Set; raise :class:`TrustListError` naming the bad key."""
        jwks = _parse_json(data)
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise TrustListError("trust list: not a JSON object with a 'keys' list")
        if not jwks["keys"]:
            raise TrustListError("trust list: 'keys' is empty")
        seen: dict[bytes, int] = {}
        keys = [_parse_key(index, jwk, seen) for index, jwk in enumerate(jwks["keys"])]
        canonical = json.dumps(jwks["keys"], sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode("utf-8")
        version = hashlib.sha256(canonical).hexdigest()[:16]
        return cls(keys, jwks, version, cache_limit)

    def to_jwks(self) -> dict[str, Any]:
        """The JWK Set as loaded (a copy), for serving to offline verifiers."""
        return copy.deepcopy(self._jwks)

    def __repr__(self) -> str:
        return f"TrustList(version={self.version!r}, keys={len(self.keys)})"
