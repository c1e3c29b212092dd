"""Issuer keys, key files, key rings (rotation, revocation) and the trust list."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

import fastpath
from fastpath import codes
from verifier.issuing import IssuerKey, KeyFileError, KeyRing, load_key, mint_wp1, save_key, trust_list, write_trust_list
from verifier.issuing.keys import KEY_FILE_FORMAT, b64url_decode, b64url_encode

NOW = 1767225600


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The most permissive umask: a private file must still come out 0600."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the key -------------------------------------------------------------------


def test_kid_is_the_first_8_bytes_of_sha256_of_the_public_key(issuer_key: IssuerKey) -> None:
    assert len(issuer_key.public_key) == 32
    assert issuer_key.kid == hashlib.sha256(issuer_key.public_key).digest()[:8]
    assert b64url_decode(issuer_key.kid_text) == issuer_key.kid
    assert "=" not in issuer_key.kid_text


def test_a_seed_gives_the_same_key_and_generate_a_new_one() -> None:
    seed = b"\x07" * 32
    assert IssuerKey.from_seed(seed).public_key == IssuerKey.from_seed(seed).public_key
    assert IssuerKey.generate().public_key != IssuerKey.generate().public_key
    with pytest.raises(ValueError):
        IssuerKey.from_seed(b"\x07" * 31)


@pytest.mark.parametrize(
    ("issuers", "status"),
    [([], "active"), ("CN-310000", "active"), ([""], "active"), (["CN-310000"], "expired")],
    ids=["no-issuer", "a-string-not-a-list", "empty-issuer", "unknown-status"],
)
def test_refuses_a_key_without_issuers_or_with_an_unknown_status(issuers: Any, status: Any) -> None:
    with pytest.raises(ValueError):
        IssuerKey.from_seed(b"\x01" * 32, issuers, status=status)


def test_repr_never_shows_the_private_seed(issuer_key: IssuerKey) -> None:
    text = repr(issuer_key)
    assert issuer_key.kid_text in text
    assert b64url_encode(issuer_key.seed) not in text
    assert issuer_key.seed.hex() not in text


def test_public_jwk_has_no_private_part(issuer_key: IssuerKey) -> None:
    jwk = issuer_key.to_jwk()
    assert "d" not in jwk
    assert jwk == {
        "kty": "OKP", "crv": "Ed25519", "x": b64url_encode(issuer_key.public_key),
        "kid": issuer_key.kid_text, "alg": "EdDSA", "use": "sig",
        "iss": ["CN-310000", "CN-110000"], "status": "active",
    }


# --- key files -----------------------------------------------------------------


def test_key_file_round_trip_is_0600_even_with_umask_0(tmp_path: Path, issuer_key: IssuerKey, umask_zero: None) -> None:
    path = save_key(tmp_path / "issuer.json", issuer_key)
    assert _mode(path) == 0o600
    loaded = load_key(path)
    assert loaded == issuer_key
    assert loaded.seed == issuer_key.seed
    assert loaded.issuers == issuer_key.issuers and loaded.created == issuer_key.created
    data = orjson.loads(path.read_bytes())
    assert data["format"] == KEY_FILE_FORMAT
    assert b64url_decode(data["d"]) == issuer_key.seed


def test_saving_again_replaces_the_file_and_leaves_no_temporary(tmp_path: Path, issuer_key: IssuerKey) -> None:
    path = tmp_path / "issuer.json"
    save_key(path, issuer_key)
    save_key(path, issuer_key.with_status("retired"))
    assert load_key(path).status == "retired"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issuer.json"]


def _tampered(issuer_key: IssuerKey, **changes: Any) -> dict[str, Any]:
    data = issuer_key.to_private_jwk()
    for name, value in changes.items():
        if value is None:
            del data[name]
        else:
            data[name] = value
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "jwk"}, "format"),
        ({"kty": "EC"}, "kty"),
        ({"crv": "Ed448"}, "kty/crv"),
        ({"d": None}, "d is not"),
        ({"d": b64url_encode(b"\x01" * 31)}, "32-byte"),
        ({"d": "not base64url!"}, "d is not"),
        ({"x": b64url_encode(b"\x02" * 32)}, "x does not match"),  # another key's public part
        ({"kid": "AAAAAAAAAAA"}, "kid does not match"),
        ({"iss": "CN-310000"}, "iss"),
        ({"status": "lost"}, "status"),
        ({"created": "yesterday"}, "created"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_a_tampered_key_file_is_refused_with_the_reason(
    tmp_path: Path, issuer_key: IssuerKey, changes: dict[str, Any], message: str
) -> None:
    path = tmp_path / "issuer.json"
    path.write_bytes(orjson.dumps(_tampered(issuer_key, **changes)))
    with pytest.raises(KeyFileError, match=message):
        load_key(path)


def test_a_key_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "issuer.json"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="not JSON"):
        load_key(path)


# --- the trust list ------------------------------------------------------------


def test_trust_list_loads_in_fastpath_with_kids_and_statuses(tmp_path: Path) -> None:
    keys = [
        IssuerKey.from_seed(bytes([i]) * 32, [f"CN-{i}10000"], status=status)
        for i, status in enumerate(["active", "retired", "revoked"], start=1)
    ]
    path = tmp_path / "trust-list.json"
    written = write_trust_list(path, keys)
    assert _mode(path) == 0o644
    trust = fastpath.TrustList.from_jwks(path.read_bytes())
    assert set(trust.keys) == {k.kid for k in keys}
    for key in keys:
        trusted = trust.keys[key.kid]
        assert trusted.public_key == key.public_key
        assert trusted.status == key.status
        assert trusted.issuers == frozenset(key.issuers)
    assert trust.to_jwks() == written
    # the same keys give the same version, whatever the order of writing
    assert fastpath.TrustList.from_jwks(orjson.dumps(trust_list(keys))).version == trust.version


def test_trust_list_refuses_an_empty_or_duplicated_key_set(issuer_key: IssuerKey) -> None:
    with pytest.raises(ValueError):
        trust_list([])
    with pytest.raises(ValueError):
        trust_list([issuer_key, issuer_key.with_status("retired")])


# --- key rings: rotation and revocation ------------------------------------------


def test_rotate_makes_a_new_active_key_and_retires_the_old(ring: KeyRing, issuer_key: IssuerKey) -> None:
    new = ring.rotate(created=NOW)
    assert new.kid != issuer_key.kid
    assert ring.active == new
    assert new.issuers == issuer_key.issuers  # by default, those of the key it replaces
    assert [k.status for k in ring.keys] == ["retired", "active"]
    newer = ring.rotate(["CN-440000"], created=NOW + 1)
    assert ring.active == newer and newer.issuers == ("CN-440000",)
    assert [k.status for k in ring.keys] == ["retired", "retired", "active"]


def test_rotate_with_a_seed_is_deterministic(ring: KeyRing) -> None:
    again = KeyRing(ring.keys)
    assert ring.rotate(seed=b"\x05" * 32, created=NOW).kid == again.rotate(seed=b"\x05" * 32, created=NOW).kid


def test_revoke_by_raw_or_text_kid(ring: KeyRing, issuer_key: IssuerKey) -> None:
    new = ring.rotate(created=NOW)
    assert ring.revoke(issuer_key.kid_text).status == "revoked"
    assert ring.get(issuer_key.kid).status == "revoked"
    assert ring.active == new
    ring.revoke(new.kid)
    with pytest.raises(LookupError):
        ring.active  # noqa: B018  (no key left that may sign)
    with pytest.raises(KeyError):
        ring.revoke(b"\x00" * 8)


def test_key_directory_round_trip(tmp_path: Path, ring: KeyRing, issuer_key: IssuerKey, umask_zero: None) -> None:
    new = ring.rotate(created=NOW)
    ring.revoke(issuer_key.kid)
    trust_path = ring.save(tmp_path)
    assert _mode(tmp_path / "keys") == 0o700
    for key in ring.keys:
        assert _mode(KeyRing.key_path(tmp_path, key)) == 0o600
    loaded = KeyRing.load(tmp_path)
    assert loaded.keys == ring.keys
    assert loaded.active == new
    assert orjson.loads(trust_path.read_bytes()) == ring.trust_list()


def test_a_directory_without_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not a key directory"):
        KeyRing.load(tmp_path)
    (tmp_path / "keys").mkdir()
    with pytest.raises(KeyFileError, match="no key files"):
        KeyRing.load(tmp_path)


def test_a_key_file_under_another_kid_name_is_refused(tmp_path: Path, ring: KeyRing, issuer_key: IssuerKey) -> None:
    ring.save(tmp_path)
    KeyRing.key_path(tmp_path, issuer_key).rename(tmp_path / "keys" / "AAAAAAAAAAA.json")
    with pytest.raises(KeyFileError, match="does not match kid"):
        KeyRing.load(tmp_path)


def test_rotation_then_revocation_as_verifiers_see_it(
    twin: ModuleType, ring: KeyRing, issuer_key: IssuerKey, permit: dict[str, Any],
    trust_of: Callable[..., fastpath.TrustList],
) -> None:
    old_code = mint_wp1(issuer_key, permit, iat=NOW - 3600)
    new = ring.rotate(created=NOW)
    new_code = mint_wp1(new, permit, iat=NOW)
    # WIRE-FORMAT 4: a retired key no longer signs but still verifies
    rotated = trust_of(ring)
    assert rotated.keys[issuer_key.kid].status == "retired"
    assert twin.verify_qr(old_code, rotated, NOW).result == codes.VALID
    assert twin.verify_qr(new_code, rotated, NOW).result == codes.VALID
    # revoked: everything it signed is rejected
    ring.revoke(issuer_key.kid)
    revoked = trust_of(ring)
    verdict = twin.verify_qr(old_code, revoked, NOW)
    assert (verdict.result, verdict.reasons) == (codes.KEY_REVOKED, (codes.R_KEY_REVOKED,))
    assert twin.verify_qr(new_code, revoked, NOW).result == codes.VALID
    # a list without the old key: it is unknown
    only_new = trust_of(new)
    assert twin.verify_qr(old_code, only_new, NOW).result == codes.UNKNOWN_KEY


def test_revocation_is_final(ring: KeyRing, issuer_key: IssuerKey) -> None:
    ring.revoke(issuer_key.kid)
    for status in ("active", "retired"):
        with pytest.raises(ValueError, match="revocation is final"):
            ring.set_status(issuer_key.kid, status)  # type: ignore[arg-type]
    assert ring.get(issuer_key.kid).status == "revoked"


def test_rotate_after_revoking_every_key_keeps_the_issuers(ring: KeyRing, issuer_key: IssuerKey) -> None:
    ring.revoke(issuer_key.kid)
    assert ring.rotate(created=NOW).issuers == issuer_key.issuers
    assert ring.active.issuers == ("CN-310000", "CN-110000")
