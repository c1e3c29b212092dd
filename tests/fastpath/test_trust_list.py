"""The trust list (WIRE-FORMAT 4): loading, and refusing a bad list as a whole, naming the bad key."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

import fastpath
from fastpath import TrustedKey, TrustList, TrustListError

from . import craft
from .craft import (
    ACTIVE, DROP, REGIONAL, RETIRED, REVOKED, STATUS_RETIRED, STATUS_REVOKED, STATUS_SIGNER, b64url,
)


def small_order_jwk(x: bytes) -> dict[str, Any]:
    # kid computed right, so that the point check is what refuses it
    return ACTIVE.jwk(x=b64url(x), kid=b64url(hashlib.sha256(x).digest()[:8]))


def with_trailing_bits(text: str) -> str:
    """The same 32 bytes in base64url with a non-zero unused low bit: a non-canonical spelling."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(text[-1])
    assert last & 3 == 0
    return text[:-1] + alphabet[last | 1]


def test_load() -> None:
    trust = TrustList.from_jwks(craft.trust_list_json())
    assert set(trust.keys) == {ACTIVE.kid, RETIRED.kid, REVOKED.kid, REGIONAL.kid, STATUS_SIGNER.kid,
                               STATUS_RETIRED.kid, STATUS_REVOKED.kid}
    key = trust.keys[ACTIVE.kid]
    assert key == TrustedKey(kid=ACTIVE.kid, public_key=ACTIVE.public_key, status="active",
                             issuers=frozenset({"CN-310000", "CN-110000"}), use="sig")
    assert trust.keys[RETIRED.kid].status == "retired" and trust.keys[REVOKED.kid].status == "revoked"
    assert trust.issuer_keys[REGIONAL.kid] == (REGIONAL.public_key, "active", frozenset({"CN-440000"}))
    assert trust.cache_limit == 65536 and trust.verdict_cache == {}
    assert re.fullmatch(r"[0-9a-f]{16}", trust.version)


def test_keys_are_kept_apart_by_use() -> None:
    # WIRE-FORMAT 8: Status List signers ("use": "status") are a key set of their own; a
    # permit issuer's key ("sig", or no use) is never one of them, nor the other way round
    trust = TrustList.from_jwks(craft.trust_list_json())
    assert set(trust.issuer_keys) == {ACTIVE.kid, RETIRED.kid, REVOKED.kid, REGIONAL.kid}
    assert set(trust.status_keys) == {STATUS_SIGNER.kid, STATUS_RETIRED.kid, STATUS_REVOKED.kid}
    assert trust.keys[STATUS_SIGNER.kid].use == "status" and trust.keys[ACTIVE.kid].use == "sig"
    assert trust.status_keys[STATUS_REVOKED.kid] == (STATUS_REVOKED.public_key, "revoked", frozenset({"CN-MOHRSS"}))
    no_use = TrustList.from_jwks(craft.jwks(ACTIVE.jwk(use=DROP), STATUS_SIGNER.jwk()))
    assert set(no_use.issuer_keys) == {ACTIVE.kid} and set(no_use.status_keys) == {STATUS_SIGNER.kid}


def test_a_list_of_status_keys_only_is_a_list() -> None:
    # nothing then verifies a permit token, but the list itself is well formed
    trust = TrustList.from_jwks(craft.jwks(STATUS_SIGNER.jwk()))
    assert trust.issuer_keys == {} and list(trust.status_keys) == [STATUS_SIGNER.kid]


def test_load_from_bytes_equals_load_from_str() -> None:
    text = craft.trust_list_json()
    assert TrustList.from_jwks(text.encode()).version == TrustList.from_jwks(text).version


def test_alg_and_use_are_optional() -> None:
    trust = TrustList.from_jwks(craft.jwks(ACTIVE.jwk(alg=DROP, use=DROP)))
    assert list(trust.keys) == [ACTIVE.kid]


def test_unknown_members_are_kept_for_serving() -> None:
    jwk = ACTIVE.jwk(x5u="https://example.invalid/cert")
    trust = TrustList.from_jwks(json.dumps({"keys": [jwk], "issuer": "MOHRSS"}))
    assert trust.to_jwks() == {"keys": [jwk], "issuer": "MOHRSS"}


def test_keys_cannot_be_changed() -> None:
    trust = TrustList.from_jwks(craft.trust_list_json())
    with pytest.raises(TypeError):
        trust.keys[b"12345678"] = trust.keys[ACTIVE.kid]  # type: ignore[index]
    with pytest.raises(AttributeError):
        trust.keys[ACTIVE.kid].status = "revoked"  # type: ignore[misc]


def test_to_jwks_is_the_list_as_loaded_and_a_copy() -> None:
    loaded = json.loads(craft.trust_list_json())
    trust = TrustList.from_jwks(craft.trust_list_json())
    served = trust.to_jwks()
    assert served == loaded
    served["keys"][0]["status"] = "revoked"
    assert trust.to_jwks() == loaded


def test_version_is_stable_for_the_same_keys() -> None:
    keys = [ACTIVE.jwk(), RETIRED.jwk()]
    compact = json.dumps({"keys": keys}, separators=(",", ":"))
    spaced = json.dumps({"keys": [dict(reversed(list(k.items()))) for k in keys]}, indent=2)
    assert TrustList.from_jwks(compact).version == TrustList.from_jwks(spaced).version


def test_version_changes_with_the_keys() -> None:
    before = TrustList.from_jwks(craft.jwks(ACTIVE.jwk(), RETIRED.jwk()))
    revoked = TrustList.from_jwks(craft.jwks(ACTIVE.jwk(status="revoked"), RETIRED.jwk()))
    added = TrustList.from_jwks(craft.jwks(ACTIVE.jwk(), RETIRED.jwk(), REGIONAL.jwk()))
    assert len({before.version, revoked.version, added.version}) == 3


def test_cache_limit_can_be_set() -> None:
    assert TrustList.from_jwks(craft.trust_list_json(), cache_limit=10).cache_limit == 10


def test_error_classes() -> None:
    assert issubclass(TrustListError, ValueError)
    assert issubclass(TrustListError, fastpath.FastpathError)
    assert fastpath.errors.TrustListError is TrustListError


# (JSON text, what the message must say)
LIST_CASES = [
    # not JSON
    pytest.param("{keys: []}", "not JSON", id="not-json"),
    # bytes that are not UTF-8
    pytest.param(b"\xff\xfe{}", "not UTF-8", id="not-utf8"),
    # a JSON array, not an object
    pytest.param("[]", "'keys' list", id="array"),
    # an object without keys
    pytest.param("{}", "'keys' list", id="no-keys"),
    # keys as an object
    pytest.param('{"keys": {}}', "'keys' list", id="keys-object"),
    # an empty list: nothing to trust is an error, not a list that refuses everything
    pytest.param('{"keys": []}', "empty", id="empty"),
    # the same JSON member twice: which one would count?
    pytest.param('{"keys": [], "keys": []}', "duplicate JSON member", id="duplicate-member"),
    # NaN is not JSON
    pytest.param('{"keys": [], "n": NaN}', "NaN", id="nan"),
]


@pytest.mark.parametrize(("text", "message"), LIST_CASES)
def test_bad_list(text: str | bytes, message: str) -> None:
    with pytest.raises(TrustListError, match=re.escape(message)):
        TrustList.from_jwks(text)


# (the bad key, placed second in the list, and what the message must say)
KEY_CASES = [
    pytest.param("not a key", "not a JSON object", id="not-object"),
    pytest.param(ACTIVE.jwk(kty="RSA"), "kty", id="kty-rsa"),
    pytest.param(ACTIVE.jwk(kty=DROP), "kty", id="kty-missing"),
    pytest.param(ACTIVE.jwk(crv="X25519"), "crv", id="crv-x25519"),
    pytest.param(ACTIVE.jwk(crv="Ed448"), "crv", id="crv-ed448"),
    pytest.param(ACTIVE.jwk(alg="ES256"), "alg", id="alg-es256"),
    pytest.param(ACTIVE.jwk(use="enc"), "use", id="use-enc"),
    pytest.param(ACTIVE.jwk(use="Status"), "use", id="use-case"),
    pytest.param(ACTIVE.jwk(use=["sig", "status"]), "use", id="use-list"),
    # a Status List signer's key follows the same rules as any other: iss too (stricter reading)
    pytest.param(STATUS_SIGNER.jwk(iss=DROP), "iss", id="status-key-iss-missing"),
    pytest.param(STATUS_SIGNER.jwk(status="suspended"), "status", id="status-key-status-unknown"),
    pytest.param(ACTIVE.jwk(d=b64url(bytes(32))), "private key", id="private-key"),
    pytest.param(ACTIVE.jwk(x=DROP), "x is not", id="x-missing"),
    pytest.param(ACTIVE.jwk(x=b64url(ACTIVE.public_key) + "="), "x is not", id="x-padded"),
    # '+' belongs to standard base64, not to base64url
    pytest.param(ACTIVE.jwk(x="+" + b64url(ACTIVE.public_key)[1:]), "x is not", id="x-standard-b64"),
    pytest.param(ACTIVE.jwk(x=b64url(ACTIVE.public_key[:31])), "x is not", id="x-31-bytes"),
    pytest.param(ACTIVE.jwk(x=with_trailing_bits(b64url(ACTIVE.public_key))), "x is not", id="x-trailing-bits"),
    pytest.param(ACTIVE.jwk(x=ACTIVE.public_key.hex()), "x is not", id="x-hex"),
    # the neutral point (order 1): every signature under it is forgeable
    pytest.param(small_order_jwk(b"\x01" + bytes(31)), "large order", id="x-identity"),
    # y = 0: a point of order 4
    pytest.param(small_order_jwk(bytes(32)), "large order", id="x-order-4"),
    # y = p: a non-canonical encoding
    pytest.param(small_order_jwk(b"\xed" + b"\xff" * 30 + b"\x7f"), "large order", id="x-non-canonical"),
    pytest.param(ACTIVE.jwk(kid=DROP), "kid is not", id="kid-missing"),
    pytest.param(ACTIVE.jwk(kid=b64url(ACTIVE.kid[:7])), "kid is not", id="kid-7-bytes"),
    pytest.param(ACTIVE.jwk(kid=b64url(ACTIVE.kid) + "="), "kid is not", id="kid-padded"),
    pytest.param(ACTIVE.jwk(kid=ACTIVE.kid.hex()), "kid is not", id="kid-hex"),
    # a kid that is not SHA-256(x)[:8]: here the kid of another key
    pytest.param(ACTIVE.jwk(kid=b64url(RETIRED.kid)), "does not match", id="kid-mismatch"),
    # the first key again
    pytest.param(RETIRED.jwk(), "duplicate kid", id="duplicate-kid"),
    pytest.param(ACTIVE.jwk(iss=DROP), "iss", id="iss-missing"),
    pytest.param(ACTIVE.jwk(iss=[]), "iss", id="iss-empty"),
    pytest.param(ACTIVE.jwk(iss="CN-310000"), "iss", id="iss-string"),
    pytest.param(ACTIVE.jwk(iss=["CN-310000", ""]), "iss", id="iss-empty-string"),
    pytest.param(ACTIVE.jwk(iss=[310000]), "iss", id="iss-int"),
    pytest.param(ACTIVE.jwk(status=DROP), "status", id="status-missing"),
    pytest.param(ACTIVE.jwk(status="suspended"), "status", id="status-unknown"),
    pytest.param(ACTIVE.jwk(status="Active"), "status", id="status-case"),
    # a list is unhashable: it must be refused like any wrong value, not raise TypeError
    pytest.param(ACTIVE.jwk(status=["active"]), "status", id="status-list"),
]


@pytest.mark.parametrize(("bad_key", "message"), KEY_CASES)
def test_bad_key_refuses_the_whole_list(bad_key: Any, message: str) -> None:
    first = RETIRED.jwk()
    text = json.dumps({"keys": [first, bad_key]})
    with pytest.raises(TrustListError, match=re.escape(message)) as error:
        TrustList.from_jwks(text)
    # the message names the key: its index, and its kid as written
    kid = bad_key.get("kid") if isinstance(bad_key, dict) else None
    assert str(error.value).startswith(f"trust list key 1 (kid {kid!r}): ")


def test_small_order_point_is_refused_with_its_kid_named() -> None:
    identity = b"\x01" + bytes(31)
    kid = b64url(hashlib.sha256(identity).digest()[:8])
    with pytest.raises(TrustListError) as error:
        TrustList.from_jwks(craft.jwks(ACTIVE.jwk(), small_order_jwk(identity)))
    assert str(error.value) == (f"trust list key 1 (kid {kid!r}): x is not a valid Ed25519 point of large order")
