"""Every issuing command end to end, in a subprocess: ``python3 -m verifier ...``.

Exit codes (verifier/cli.py): 0 success or VALID, 1 another verdict, 2 a usage error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import nacl.signing
import orjson
import pytest

import fastpath
from fastpath import codes
from verifier.issuing import IssuerKey, KeyRing, load_key, mint_wp1
from verifier.issuing.card import CARD_AUTH_DOMAIN, SoftwareCard
from verifier.issuing.keys import b64url_encode
from verifier.issuing.mint import end_of_day

NOW = 1767225600


def verifier(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "verifier", *args],
        input=stdin, capture_output=True, timeout=60, cwd=cwd, check=False,
    )


def output(result: subprocess.CompletedProcess[bytes]) -> Any:
    assert result.stdout.count(b"\n") == 1, result.stdout  # one JSON object, one line
    return orjson.loads(result.stdout)


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "issuer"
    result = verifier("issuer", "keygen", "--out", str(directory), "--issuer", "CN-310000", "--issuer", "CN-110000")
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture
def permit_file(tmp_path: Path, permit: dict[str, Any]) -> Path:
    path = tmp_path / "permit.json"
    path.write_bytes(orjson.dumps(permit))
    return path


# --- verifier issuer ... --------------------------------------------------------------


def test_keygen_writes_a_private_key_and_a_trust_list(tmp_path: Path) -> None:
    directory = tmp_path / "issuer"
    result = verifier("issuer", "keygen", "--out", str(directory), "--issuer", "CN-310000", "--issuer", "CN-440000")
    assert result.returncode == 0, result.stderr
    said = output(result)
    assert said["status"] == "active" and said["issuers"] == ["CN-310000", "CN-440000"]
    key_file = Path(said["key_file"])
    assert key_file == directory / "keys" / f"{said['kid']}.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = load_key(key_file)
    assert key.kid_text == said["kid"]
    # the private key is never printed
    assert b64url_encode(key.seed).encode() not in result.stdout + result.stderr
    trust = fastpath.TrustList.from_jwks(Path(said["trust_list"]).read_bytes())
    assert set(trust.keys) == {key.kid}
    assert trust.keys[key.kid].issuers == frozenset({"CN-310000", "CN-440000"})


def test_keygen_defaults_to_cn_310000(tmp_path: Path) -> None:
    result = verifier("issuer", "keygen", "--out", str(tmp_path / "k"))
    assert result.returncode == 0, result.stderr
    assert output(result)["issuers"] == ["CN-310000"]


def test_keygen_refuses_a_directory_that_already_holds_keys(key_dir: Path) -> None:
    before = (key_dir / "trust-list.json").read_bytes()
    result = verifier("issuer", "keygen", "--out", str(key_dir))
    assert result.returncode == 2
    assert b"already holds issuer keys" in result.stderr
    assert (key_dir / "trust-list.json").read_bytes() == before


def test_rotate_then_revoke(key_dir: Path) -> None:
    first = KeyRing.load(key_dir).active
    rotated = verifier("issuer", "rotate", "--dir", str(key_dir))
    assert rotated.returncode == 0, rotated.stderr
    said = output(rotated)
    assert said["kid"] != first.kid_text and said["status"] == "active"
    assert said["issuers"] == ["CN-310000", "CN-110000"]  # those of the key it replaces
    statuses = {k["kid"]: k["status"] for k in orjson.loads((key_dir / "trust-list.json").read_bytes())["keys"]}
    assert statuses == {first.kid_text: "retired", said["kid"]: "active"}

    revoked = verifier("issuer", "revoke", "--dir", str(key_dir), f"--kid={first.kid_text}")
    assert revoked.returncode == 0, revoked.stderr
    assert output(revoked)["status"] == "revoked"
    trust = fastpath.TrustList.from_jwks((key_dir / "trust-list.json").read_bytes())
    assert trust.keys[first.kid].status == "revoked"
    assert KeyRing.load(key_dir).active.kid_text == said["kid"]


def test_revoking_the_last_active_key_warns(key_dir: Path) -> None:
    kid = KeyRing.load(key_dir).active.kid_text
    result = verifier("issuer", "revoke", "--dir", str(key_dir), f"--kid={kid}")
    assert result.returncode == 0
    assert b"no active key remains" in result.stderr


@pytest.mark.parametrize("kid", ["AAAAAAAAAAA", "not a kid!"])
def test_revoke_of_an_unknown_kid_is_a_usage_error(key_dir: Path, kid: str) -> None:
    result = verifier("issuer", "revoke", "--dir", str(key_dir), f"--kid={kid}")
    assert result.returncode == 2
    assert b"no key with kid" in result.stderr


def test_rotate_in_a_directory_without_keys_is_a_usage_error(tmp_path: Path) -> None:
    result = verifier("issuer", "rotate", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert b"not a key directory" in result.stderr


# --- verifier mint ... and verify-qr ------------------------------------------------------


def test_mint_wp1_then_verify_qr_valid(key_dir: Path, permit: dict[str, Any]) -> None:
    minted = verifier("mint", "wp1", "--key", str(key_dir), "--permit", json.dumps(permit), "--iat", str(NOW))
    assert minted.returncode == 0, minted.stderr
    code = minted.stdout.decode().rstrip("\n")
    assert code.startswith("WP1:") and "\n" not in code

    checked = verifier("verify-qr", "--trust-list", str(key_dir / "trust-list.json"), "--at", str(NOW), code)
    assert checked.returncode == 0, checked.stderr
    assert output(checked) == {"result": "VALID", "reasons": [], "profile": "WP1", "permit": permit}


def test_verify_qr_reads_stdin_and_exits_1_when_expired(key_dir: Path, permit_file: Path, permit: dict[str, Any]) -> None:
    key_file = next((key_dir / "keys").iterdir())
    minted = verifier("mint", "wp1", "--key", str(key_file), "--permit", f"@{permit_file}", "--iat", str(NOW))
    assert minted.returncode == 0, minted.stderr
    late = str(end_of_day(permit["vt"]) + 60)
    checked = verifier("verify-qr", "--trust-list", str(key_dir / "trust-list.json"), "--at", late, "-",
                       stdin=minted.stdout)
    assert checked.returncode == 1
    said = output(checked)
    assert (said["result"], said["reasons"], said["profile"]) == ("EXPIRED", ["time.expired"], "WP1")


def test_mint_es1_with_iat_and_exp(key_dir: Path, permit: dict[str, Any]) -> None:
    minted = verifier("mint", "es1", "--key", str(key_dir), "--permit", json.dumps(permit),
                      "--iat", str(NOW), "--exp", str(NOW + 120))
    assert minted.returncode == 0, minted.stderr
    trust = fastpath.TrustList.from_jwks((key_dir / "trust-list.json").read_bytes())
    verdict = fastpath.verify_qr(minted.stdout.decode().strip("\n"), trust, NOW)
    assert (verdict.result, verdict.profile) == (codes.VALID, codes.PROFILE_ES1)
    assert (verdict.claims["iat"], verdict.claims["exp"]) == (NOW, NOW + 120)
    assert len(verdict.claims["cti"]) == 16


def test_mint_from_a_permit_record_array(key_dir: Path, permit: dict[str, Any]) -> None:
    # a PermitRecord as msgspec writes it (array_like): pn, n, nat, dob, cat, emp, vf, vt, v, status, ssn, cards
    record = [permit[k] for k in ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v")]
    record += ["active", permit["ssn"], [["S31000000000077", "active"]]]
    minted = verifier("mint", "es1", "--key", str(key_dir), "--permit", json.dumps(record), "--iat", str(NOW))
    assert minted.returncode == 0, minted.stderr
    trust = fastpath.TrustList.from_jwks((key_dir / "trust-list.json").read_bytes())
    verdict = fastpath.verify_qr(minted.stdout.decode().strip("\n"), trust, NOW)
    assert verdict.result == codes.VALID
    assert verdict.permit["cn"] == "S31000000000077"


@pytest.mark.parametrize(
    ("permit_argument", "message"),
    [
        ('{"pn": "WP1"}', b"permit n is a non-empty string"),
        ("{not json", b"not valid JSON"),
        ('"a string"', b"permit is a JSON object"),
        ("@/nonexistent/permit.json", b"cannot read permit"),
    ],
    ids=["incomplete", "not-json", "not-an-object", "no-file"],
)
def test_mint_with_a_bad_permit_is_a_usage_error(key_dir: Path, permit_argument: str, message: bytes) -> None:
    result = verifier("mint", "wp1", "--key", str(key_dir), "--permit", permit_argument)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == b""


def test_mint_with_a_bad_key_file_is_a_usage_error(tmp_path: Path, permit: dict[str, Any]) -> None:
    bad = tmp_path / "key.json"
    bad.write_text('{"kty": "OKP"}')
    for key in (bad, tmp_path / "missing.json"):
        result = verifier("mint", "wp1", "--key", str(key), "--permit", json.dumps(permit))
        assert result.returncode == 2
        assert result.stderr.startswith(b"verifier mint: ")


def test_mint_es1_without_a_card_number_is_a_usage_error(key_dir: Path, permit: dict[str, Any]) -> None:
    without_card = {k: v for k, v in permit.items() if k != "cn"}
    result = verifier("mint", "es1", "--key", str(key_dir), "--permit", json.dumps(without_card))
    assert result.returncode == 2
    assert b"cn" in result.stderr


def test_verify_qr_of_garbage_is_malformed_exit_1(key_dir: Path) -> None:
    result = verifier("verify-qr", "--trust-list", str(key_dir / "trust-list.json"), "WP1:abc")
    assert result.returncode == 1
    assert output(result) == {"result": "MALFORMED", "reasons": ["base45.alphabet"], "profile": "WP1", "permit": None}


def test_verify_qr_from_stdin_drops_only_the_line_ending(tmp_path: Path, permit: dict[str, Any]) -> None:
    # a space is a base45 character (RFC 9285): a code holding one must survive stdin
    for i in range(200):
        key = IssuerKey.from_seed(i.to_bytes(32, "big"))
        code = mint_wp1(key, permit, iat=NOW)
        if " " in code:
            break
    else:  # pragma: no cover - a ~400-character code without one space is vanishingly rare
        pytest.fail("no code with a space")
    trust_path = tmp_path / "trust-list.json"
    trust_path.write_bytes(orjson.dumps(KeyRing([key]).trust_list()))
    result = verifier("verify-qr", "--trust-list", str(trust_path), "--at", str(NOW), "-",
                      stdin=code.encode() + b"\r\n")
    assert result.returncode == 0, result.stdout
    assert output(result)["result"] == "VALID"
    # a space after the code is not a line ending: it is kept, and the text is no longer base45 of that length
    result = verifier("verify-qr", "--trust-list", str(trust_path), "--at", str(NOW), "-", stdin=code.encode() + b" \n")
    assert result.returncode == 1


def test_verify_qr_with_an_unreadable_trust_list_is_a_usage_error(tmp_path: Path) -> None:
    result = verifier("verify-qr", "--trust-list", str(tmp_path / "missing.json"), "WP1:")
    assert result.returncode == 2
    assert b"cannot read trust list" in result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", b"invalid trust list"),
        (b'{"keys": []}', b"invalid trust list"),
        # a small-order point (the identity, encoded as 1 followed by zeros) as x
        (None, b"invalid trust list"),
    ],
    ids=["not-json", "empty", "small-order-key"],
)
def test_verify_qr_with_an_invalid_trust_list_is_a_usage_error(tmp_path: Path, content: bytes | None, message: bytes) -> None:
    if content is None:
        x = b"\x01" + b"\x00" * 31
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(x), "kid": b64url_encode(hashlib.sha256(x).digest()[:8]),
               "alg": "EdDSA", "use": "sig", "iss": ["CN-310000"], "status": "active"}
        content = orjson.dumps({"keys": [jwk]})
    path = tmp_path / "trust-list.json"
    path.write_bytes(content)
    result = verifier("verify-qr", "--trust-list", str(path), "WP1:")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == b""


def test_usage_errors_exit_2() -> None:
    assert verifier().returncode == 2
    assert verifier("mint", "wp2", "--key", "k", "--permit", "{}").returncode == 2
    assert verifier("verify-qr", "--trust-list", "x", "--at", "yesterday", "WP1:").returncode == 2


# --- verifier mint card, verifier card sign -------------------------------------------------


def test_mint_card_then_card_sign(tmp_path: Path, key_dir: Path, permit: dict[str, Any]) -> None:
    holder = {"cn": permit["cn"], "ssn": permit["ssn"], "pn": permit["pn"]}
    out = tmp_path / "card"
    minted = verifier("mint", "card", "--key", str(key_dir), "--card", json.dumps(holder), "--out", str(out),
                      "--iat", str(NOW), "--exp", str(NOW + 86400))
    assert minted.returncode == 0, minted.stderr
    said = output(minted)
    certificate = Path(said["certificate_file"]).read_bytes()
    assert base64.b64decode(said["certificate"]) == certificate
    card_key = Path(said["card_key_file"])
    assert stat.S_IMODE(card_key.stat().st_mode) == 0o600
    card = SoftwareCard.load(card_key)
    assert base64.b64decode(said["card_public_key"]) == card.public_key
    assert b64url_encode(card.seed).encode() not in minted.stdout

    trust = fastpath.TrustList.from_jwks((key_dir / "trust-list.json").read_bytes())
    verdict = fastpath.verify_card_certificate(certificate, trust, NOW)
    assert verdict.result == codes.VALID
    assert verdict.permit == holder and verdict.card_public_key == card.public_key

    challenge = os.urandom(32)
    for encoded in (base64.b64encode(challenge).decode(), base64.urlsafe_b64encode(challenge).decode().rstrip("="),
                    challenge.hex()):
        signed = verifier("card", "sign", "--card-key", str(card_key), "--challenge", encoded)
        assert signed.returncode == 0, signed.stderr
        signature = base64.b64decode(output(signed)["signature"])
        nacl.signing.VerifyKey(card.public_key).verify(CARD_AUTH_DOMAIN + challenge, signature)
        assert fastpath.check_card_signature(card.public_key, challenge, signature) is None


def test_card_sign_refuses_a_challenge_that_is_not_32_bytes(tmp_path: Path) -> None:
    card_key = SoftwareCard.generate().save(tmp_path / "card-key.json")
    result = verifier("card", "sign", "--card-key", str(card_key), "--challenge", base64.b64encode(b"x" * 31).decode())
    assert result.returncode == 2
    assert b"32 bytes" in result.stderr


def test_mint_card_with_an_incomplete_card_is_a_usage_error(tmp_path: Path, key_dir: Path) -> None:
    result = verifier("mint", "card", "--key", str(key_dir), "--card", '{"cn": "S1"}', "--out", str(tmp_path / "c"))
    assert result.returncode == 2
    assert b"card ssn" in result.stderr
    assert not (tmp_path / "c").exists()
