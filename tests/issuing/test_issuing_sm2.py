"""SM2-with-SM3 issuer keys (WIRE-FORMAT 9): signing through libcrypto, key files, the
per-issuer choice in key rings and key directories, codes and card certificates
judged by both fastpath twins, and the simulator's SM2 desk."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmalg
import orjson
import pytest

import fastpath
from fastpath import codes
from fastpath._sm2 import DEFAULT_USER_ID, N
from verifier.issuing import IssuerKey, KeyFileError, KeyRing, SoftwareCard, load_key, mint_card_certificate, \
    mint_es1, mint_wp1, save_key
from verifier.issuing.keys import b64url_decode, b64url_encode
from verifier.issuing.sm2 import Sm2SigningKey, sm2_signing_available

from .conftest import ISSUER, NOW

SEED = bytes(range(100, 132))


@pytest.fixture
def sm2_key() -> IssuerKey:
    return IssuerKey.from_seed(SEED, [ISSUER, "CN-110000"], created=NOW - 86400, alg="SM2-SM3")


def test_this_machine_can_sign_with_sm2() -> None:
    assert sm2_signing_available() is None


def test_an_sm2_key_is_deterministic_from_its_seed_and_its_point_is_dG(sm2_key: IssuerKey) -> None:
    again = IssuerKey.from_seed(SEED, [ISSUER, "CN-110000"], created=NOW - 86400, alg="SM2-SM3")
    assert again == sm2_key and again.public_key == sm2_key.public_key
    assert (sm2_key.alg, sm2_key.cose_alg, sm2_key.user_id) == ("SM2-SM3", -65537, DEFAULT_USER_ID)
    d = int.from_bytes(sm2_key.seed, "big")
    assert 1 <= d <= N - 2
    # gmalg's [d]G (another implementation) is the point libcrypto derived
    assert gmalg.SM2().generate_pk(sm2_key.seed) == sm2_key.public_key
    other = IssuerKey.from_seed(bytes(32), alg="SM2-SM3")
    assert other.public_key != sm2_key.public_key and other.kid != sm2_key.kid


def test_sm2_signatures_verify_elsewhere_and_are_randomised(sm2_key: IssuerKey) -> None:
    message = b"a message" * 30
    first, second = sm2_key.sign(message), sm2_key.sign(message)
    assert len(first) == len(second) == 64 and first != second  # a fresh nonce each time
    verifier = gmalg.SM2(pk=sm2_key.public_key, uid=DEFAULT_USER_ID)
    assert verifier.verify(message, first[:32], first[32:]) and verifier.verify(message, second[:32], second[32:])
    assert not verifier.verify(message + b"!", first[:32], first[32:])


def test_private_scalars_out_of_range_are_refused() -> None:
    for d in (0, N - 1, N, 2**256 - 1):
        with pytest.raises(ValueError, match=r"\[1, n - 2\]"):
            Sm2SigningKey(d.to_bytes(32, "big"))
    with pytest.raises(ValueError, match="32-byte"):
        Sm2SigningKey(b"\x01" * 31)
    with pytest.raises(ValueError, match="user id"):
        Sm2SigningKey(b"\x01" * 32, b"")
    with pytest.raises(ValueError, match="Ed25519 key has none"):
        IssuerKey.generate(alg="EdDSA", user_id=b"x")


def test_the_trust_list_jwk_of_an_sm2_key(sm2_key: IssuerKey) -> None:
    jwk = sm2_key.to_jwk()
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "SM2", "SM2-SM3")
    assert b"\x04" + b64url_decode(jwk["x"]) + b64url_decode(jwk["y"]) == sm2_key.public_key
    assert "distid" not in jwk and "d" not in jwk
    custom = IssuerKey.from_seed(SEED, alg="SM2-SM3", user_id="签发@CN-310000".encode())
    assert b64url_decode(custom.to_jwk()["distid"]).decode() == "签发@CN-310000"
    assert repr(sm2_key).startswith("IssuerKey(alg='SM2-SM3'") and b64url_encode(sm2_key.seed) not in repr(sm2_key)


def test_an_sm2_key_file_round_trips_and_is_private(tmp_path: Path, sm2_key: IssuerKey) -> None:
    custom = IssuerKey.from_seed(SEED, [ISSUER], alg="SM2-SM3", user_id=b"issuer-7")
    for key in (sm2_key, custom):
        path = save_key(tmp_path / f"{key.kid_text}.json", key)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        loaded = load_key(path)
        assert loaded == key and loaded.user_id == key.user_id and loaded.sign(b"m") != b""


@pytest.mark.parametrize(("changes", "message"), [
    ({"y": b64url_encode(b"\x02" * 32)}, "y does not match"),
    ({"x": b64url_encode(b"\x02" * 32)}, "x does not match"),
    ({"alg": "EdDSA"}, "alg is not 'SM2-SM3'"),
    ({"crv": "P-256"}, "kty/crv"),
    ({"d": b64url_encode((N - 1).to_bytes(32, "big"))}, r"\[1, n - 2\]"),
    ({"d": b64url_encode(b"\x01" * 33)}, "32-byte"),
])
def test_a_tampered_sm2_key_file_is_refused(tmp_path: Path, sm2_key: IssuerKey, changes: dict[str, Any],
                                            message: str) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(orjson.dumps({**sm2_key.to_private_jwk(), **changes}))
    with pytest.raises(KeyFileError, match=message):
        load_key(path)


def test_the_user_id_of_a_key_file_is_its_distid(tmp_path: Path, sm2_key: IssuerKey) -> None:
    # The user id is no part of the point or the kid: the file's distid is the signer's.
    path = tmp_path / "key.json"
    path.write_bytes(orjson.dumps({**sm2_key.to_private_jwk(), "distid": b64url_encode(b"someone else")}))
    loaded = load_key(path)
    assert (loaded.kid, loaded.user_id) == (sm2_key.kid, b"someone else")
    path.write_bytes(orjson.dumps({**sm2_key.to_private_jwk(), "distid": "not base64url!"}))
    with pytest.raises(KeyFileError, match="distid"):
        load_key(path)


# --- codes and certificates, judged by both twins ---------------------------------------
def test_sm2_codes_and_certificates_verify_on_both_twins(twin: types.ModuleType, sm2_key: IssuerKey,
                                                         permit: dict[str, Any],
                                                         trust_of: Callable[..., fastpath.TrustList]) -> None:
    trust = trust_of(sm2_key)
    wp1 = mint_wp1(sm2_key, permit, iat=NOW - 60)
    es1 = mint_es1(sm2_key, permit, iat=NOW - 10)
    card = SoftwareCard.derive(b"m" * 16, "S31000012345678")
    certificate = mint_card_certificate(sm2_key, permit, card.public_key, iat=NOW - 60, exp=NOW + 86400)
    challenge = bytes(range(32))
    for verdict in (twin.verify_qr(wp1, trust, NOW), twin.verify_qr(es1, trust, NOW),
                    twin.verify_card(certificate, challenge, card.sign_challenge(challenge), trust, NOW)):
        assert verdict.ok and verdict.kid == sm2_key.kid, verdict


def test_a_ring_moves_from_ed25519_to_sm2_and_back(twin: types.ModuleType, permit: dict[str, Any],
                                                    trust_of: Callable[..., fastpath.TrustList]) -> None:
    ring = KeyRing([IssuerKey.from_seed(bytes(32), [ISSUER], created=1)])
    ed_code = mint_wp1(ring.active, permit, iat=NOW - 60)
    sm2 = ring.rotate(alg="SM2-SM3", seed=SEED, created=2, user_id=b"issuer-7")
    assert (sm2.alg, sm2.user_id) == ("SM2-SM3", b"issuer-7")
    again = ring.rotate(seed=bytes([9] * 32), created=3)  # keeps the newest key's algorithm and user id
    assert (again.alg, again.user_id) == ("SM2-SM3", b"issuer-7")
    sm2_code = mint_wp1(again, permit, iat=NOW - 60)
    assert twin.verify_qr(sm2_code, trust_of(ring), NOW).ok
    assert twin.verify_qr(ed_code, trust_of(ring), NOW).ok  # retired Ed25519 key: still verifies
    ring.revoke(again.kid)
    back = ring.rotate(alg="EdDSA", created=4)
    assert back.alg == "EdDSA" and back.user_id is None
    trust = trust_of(ring)
    assert twin.verify_qr(sm2_code, trust, NOW).result == codes.KEY_REVOKED
    assert twin.verify_qr(mint_wp1(back, permit, iat=NOW - 60), trust, NOW).ok


# --- the command line ----------------------------------------------------------------------
def verifier(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, timeout=60, check=False)


def test_cli_keygen_rotate_revoke_with_sm2(tmp_path: Path, permit: dict[str, Any]) -> None:
    directory = tmp_path / "issuer"
    made = verifier("issuer", "keygen", "--out", str(directory), "--alg", "SM2-SM3", "--distid", "CN-310000 desk 1")
    assert made.returncode == 0, made.stderr
    first = orjson.loads(made.stdout)
    assert first["alg"] == "SM2-SM3"
    jwk = json.loads((directory / "trust-list.json").read_text())["keys"][0]
    assert (jwk["kty"], jwk["crv"], b64url_decode(jwk["distid"])) == ("EC", "SM2", b"CN-310000 desk 1")
    permit_file = tmp_path / "permit.json"
    permit_file.write_bytes(orjson.dumps(permit))
    code = verifier("mint", "wp1", "--key", str(directory), "--permit", f"@{permit_file}", "--iat", str(NOW - 60))
    assert code.returncode == 0, code.stderr
    text = code.stdout.decode().strip()
    checked = verifier("verify-qr", "--trust-list", str(directory / "trust-list.json"), "--at", str(NOW), text)
    assert checked.returncode == 0 and orjson.loads(checked.stdout)["result"] == "VALID", checked.stdout

    rotated = verifier("issuer", "rotate", "--dir", str(directory), "--alg", "EdDSA")
    assert rotated.returncode == 0, rotated.stderr
    keys = orjson.loads(rotated.stdout)["keys"]
    assert [(k["alg"], k["status"]) for k in keys] == [("SM2-SM3", "retired"), ("EdDSA", "active")]
    revoked = verifier("issuer", "revoke", "--dir", str(directory), f"--kid={first['kid']}")
    assert revoked.returncode == 0, revoked.stderr
    checked = verifier("verify-qr", "--trust-list", str(directory / "trust-list.json"), "--at", str(NOW), text)
    assert checked.returncode == 1 and orjson.loads(checked.stdout)["result"] == "KEY_REVOKED"


@pytest.mark.parametrize(("args", "message"), [
    (("--alg", "ES256"), b"invalid choice"),
    (("--alg", "EdDSA", "--distid", "x"), b"needs --alg SM2-SM3"),
])
def test_cli_refuses_bad_algorithm_options(tmp_path: Path, args: tuple[str, ...], message: bytes) -> None:
    result = verifier("issuer", "keygen", "--out", str(tmp_path / "k"), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "k" / "keys").exists()  # nothing written


# --- the simulator's desk -------------------------------------------------------------------
def test_the_simulator_issues_with_sm2_and_rotates_between_algorithms(twin: types.ModuleType) -> None:
    from verifier.upstream.simulator import Upstream

    upstream = Upstream.create(permits=50, seed=3, issuer_alg="SM2-SM3")
    again = Upstream.create(permits=50, seed=3, issuer_alg="SM2-SM3")
    assert upstream.trust_list() == again.trust_list()  # keys derived from the seed
    [key] = upstream.trust_list()["keys"]
    assert (key["kty"], key["crv"], key["status"]) == ("EC", "SM2", "active")
    record = next(upstream.record_at(i) for i in range(50) if upstream.record_at(i).status == "active")
    code, _ = upstream.mint_wp1(record.pn)
    now = int(upstream.feed.clock())

    def trust() -> fastpath.TrustList:
        return fastpath.TrustList.from_jwks(json.dumps({"keys": upstream.trust_list()["keys"]}))

    assert twin.verify_qr(code, trust(), now).ok
    rotated = upstream.rotate_key("EdDSA")
    assert [(k["kty"], k["status"]) for k in rotated["keys"]] == [("EC", "retired"), ("OKP", "active")]
    assert twin.verify_qr(code, trust(), now).ok
    upstream.revoke_key(key["kid"])
    assert twin.verify_qr(code, trust(), now).result == codes.KEY_REVOKED
    new_code, _ = upstream.mint_wp1(record.pn)
    assert twin.verify_qr(new_code, trust(), now).ok
