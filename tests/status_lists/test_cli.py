"""``verifier status-lists keys ...`` and ``run``'s usage errors, ``verifier mint --status`` and
``verifier card read``: clear answers (exit 2 with a message), never a traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import fastpath
from verifier.cli import main
from verifier.status_lists.keys import SIGNING_KEYS_KEY, decode_ring, public_jwks


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_keys_rotate_list_revoke(redis_url: str, redis_sync: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "status-lists", "keys", "list", "--redis", redis_url)
    assert code == 2 and "no Status List signing keys" in err
    code, out, _ = run(capsys, "status-lists", "keys", "rotate", "--redis", redis_url)  # the first key
    first = json.loads(out)
    assert code == 0 and [k["status"] for k in first["keys"]] == ["active"] and first["changed"]
    code, out, _ = run(capsys, "status-lists", "keys", "rotate", "--redis", redis_url)
    second = json.loads(out)
    assert [k["status"] for k in second["keys"]] == ["retired", "active"]
    assert "\"d\":" not in out and second["changed"] != first["changed"]  # public parts only
    code, out, _ = run(capsys, "status-lists", "keys", "revoke", "--redis", redis_url, f"--kid={first['changed']}")
    assert code == 0 and [k["status"] for k in json.loads(out)["keys"]] == ["revoked", "active"]
    ring = decode_ring(redis_sync.get(SIGNING_KEYS_KEY))
    trust = fastpath.TrustList.from_jwks(public_jwks(ring))
    assert {k.status for k in trust.keys.values()} == {"revoked", "active"}
    assert all(k.use == "status" for k in trust.keys.values())


@pytest.mark.parametrize(("argv", "said"), [
    (["keys", "revoke", "--kid", "AAAAAAAAAAA"], "no Status List signing keys"),   # nothing stored yet
    (["keys", "list"], "no Status List signing keys"),
])
def test_keys_usage_errors(redis_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], said: str) -> None:
    code, _, err = run(capsys, "status-lists", *argv, "--redis", redis_url)
    assert code == 2 and said in err


def test_a_bad_kid_and_a_corrupt_ring(redis_url: str, redis_sync: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "status-lists", "keys", "rotate", "--redis", redis_url)
    code, _, err = run(capsys, "status-lists", "keys", "revoke", "--redis", redis_url, "--kid", "not-a-kid!")
    assert code == 2 and "no Status List signing key with kid" in err
    redis_sync.set(SIGNING_KEYS_KEY, b"{broken")
    code, _, err = run(capsys, "status-lists", "keys", "list", "--redis", redis_url)
    assert code == 2 and "not JSON" in err


def test_an_unreachable_store(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "status-lists", "keys", "list", "--redis", "redis://127.0.0.1:9/0")
    assert code == 2 and "cannot be reached" in err


def test_run_usage_errors(redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    code, _, err = run(capsys, "status-lists", "run")
    assert code == 2 and "no Redis URL" in err
    code, _, err = run(capsys, "status-lists", "run", "--redis", redis_url, "--ttl", "600", "--lifetime", "600")
    assert code == 2 and "longer than" in err
    code, _, err = run(capsys, "status-lists", "run", "--redis", redis_url, "--ttl", "0")
    assert code == 2 and "at least 1" in err


def test_mint_with_a_status_claim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "issuer", "keygen", "--out", str(tmp_path / "keys"))[0] == 0
    permit = json.dumps({"pn": "WP1", "n": "N", "nat": "GBR", "dob": "1990-01-01", "cat": "B", "emp": "E" * 18,
                         "vf": "2025-01-01", "vt": "2030-01-01", "v": 1})
    code, out, _ = run(capsys, "mint", "wp1", "--key", str(tmp_path / "keys"), "--permit", permit,
                       "--status", "https://pv.example/v1/status-lists/permits", "42")
    assert code == 0
    trust = fastpath.TrustList.from_jwks((tmp_path / "keys" / "trust-list.json").read_bytes())
    assert fastpath.verify_qr(out.strip(), trust).status_ref == ("https://pv.example/v1/status-lists/permits", 42)
    code, _, err = run(capsys, "mint", "wp1", "--key", str(tmp_path / "keys"), "--permit", permit,
                       "--status", "https://pv.example/x", "-1")
    assert code == 2 and "unsigned integer" in err
    code, _, err = run(capsys, "mint", "wp1", "--key", str(tmp_path / "keys"), "--permit", permit,
                       "--status", "https://pv.example/x", "many")
    assert code == 2 and "unsigned integer" in err


def test_card_read_makes_a_read_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "issuer", "keygen", "--out", str(tmp_path / "keys"))[0] == 0
    card = json.dumps({"cn": "S31000000000001", "ssn": "9310000199000000001", "pn": "WP1"})
    assert run(capsys, "mint", "card", "--key", str(tmp_path / "keys"), "--card", card, "--out",
               str(tmp_path / "card"), "--status", "https://pv.example/v1/status-lists/cards", "3")[0] == 0
    code, out, _ = run(capsys, "card", "read", "--card-dir", str(tmp_path / "card"))
    read = json.loads(out)
    assert code == 0 and set(read) == {"certificate", "challenge", "signature"}
    trust = fastpath.TrustList.from_jwks((tmp_path / "keys" / "trust-list.json").read_bytes())
    verdict = fastpath.verify_card(*(base64.b64decode(read[k]) for k in ("certificate", "challenge", "signature")),
                                   trust)
    assert verdict.ok and verdict.status_ref == ("https://pv.example/v1/status-lists/cards", 3)
    code, _, err = run(capsys, "card", "read", "--card-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "card", "read", "--card-dir", str(tmp_path / "card"), "--challenge", "AAAA")
    assert code == 2 and "32 bytes" in err
