"""The trust list (WIRE-FORMAT 4): a JWK Set of Ed25519 issuer keys, and of the
keys that sign Status Lists (WIRE-FORMAT 8, ``use`` "status").

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
from dataclasses import dataclass
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

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
    public_key: bytes     # 32-byte raw Ed25519 key
    status: str           # active | retired | revoked
    issuers: frozenset[str]  # the iss values this key may sign for
    use: str = USE_SIG    # sig: permit tokens and card certificates; status: Status Lists only


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
    if jwk.get("kty") != "OKP":
        raise refuse(f"kty must be 'OKP', got {jwk.get('kty')!r}")
    if jwk.get("crv") != "Ed25519":
        raise refuse(f"crv must be 'Ed25519', got {jwk.get('crv')!r}")
    if "alg" in jwk and jwk["alg"] != "EdDSA":
        raise refuse(f"alg must be 'EdDSA' when present, got {jwk['alg']!r}")
    use = jwk.get("use", USE_SIG)
    if type(use) is not str or use not in USES:
        raise refuse(f"use must be 'sig' or 'status' when present, got {use!r}")
    if "d" in jwk:
        # A private key published in a trust list is an incident, not a key to trust.
        raise refuse("holds a private key ('d'): a trust list carries public keys only")
    public_key = b64url_decode_strict(jwk.get("x"))
    if public_key is None or len(public_key) != 32:
        raise refuse("x is not the unpadded base64url of a 32-byte Ed25519 key")
    # WIRE-FORMAT 4: small-order and non-canonical points refuse the whole list.
    if not crypto_core_ed25519_is_valid_point(public_key):
        raise refuse("x is not a valid Ed25519 point of large order")
    kid = b64url_decode_strict(kid_text)
    if kid is None or len(kid) != 8:
        raise refuse("kid is not the unpadded base64url of 8 bytes")
    if kid != hashlib.sha256(public_key).digest()[:8]:
        raise refuse("kid does not match the first 8 bytes of SHA-256(x)")
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
    return TrustedKey(kid=kid, public_key=public_key, status=status, issuers=frozenset(issuers), use=use)


class TrustList:
    """A validated trust list. Build it with :meth:`from_jwks`; it does not change
    afterwards (a new list is a new object, with its own empty verdict cache).

    - ``version``: 16 hex digits of SHA-256 over the canonical JSON of its keys.
    - ``keys``: every key by kid (:class:`TrustedKey`), read-only.
    - ``cache_limit``: the verdict cache's bound (0: no cache).
    - ``issuer_keys``: the table both twins look kids up in, kid -> (32-byte
      public key, status, issuers), of the keys with ``use`` "sig" (or none). A
      plain dict, because the compiled twin looks it up with ``PyDict_GetItem``:
      read it, never change it.
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
    issuer_keys: dict[bytes, tuple[bytes, str, frozenset[str]]]
    status_keys: dict[bytes, tuple[bytes, str, frozenset[str]]]
    verdict_cache: dict[str, Any]
    _jwks: dict[str, Any]

    def __init__(self, keys: list[TrustedKey], jwks: dict[str, Any], version: str,
                 cache_limit: int = DEFAULT_CACHE_LIMIT) -> None:
        self.keys = types.MappingProxyType({key.kid: key for key in keys})
        self.issuer_keys = {key.kid: (key.public_key, key.status, key.issuers) for key in keys
                            if key.use == USE_SIG}
        self.status_keys = {key.kid: (key.public_key, key.status, key.issuers) for key in keys
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
