"""``verifier offline fetch`` and ``verifier offline verify`` against the whole service for real,
and against a real HTTP server answering what a broken service would: every bad input is a
clear result or error (exit 1 or 2 with a message), never a traceback, never VALID, and a
fetch that fails leaves the bundle held as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fastpath.offline import BUNDLE_FILE
from fastpath.status_list import MAX_TOKEN_BYTES
from verifier.cli import main
from verifier.index.status_lists import MEDIA_TYPE, PATH
from verifier.issuing import mint_wp1
from verifier.issuing.keys import IssuerKey, KeyRing
from verifier.status_lists import keys as signing_keys
from verifier.status_lists.token import status_list_token

from tests.sync.support import REPO, wait_for

from .conftest import Answer, FakeService, Service, bundle_bytes


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str, stdin: bytes | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    """``verifier ARGV`` in this process: (exit code, stdout, stderr)."""
    if stdin is not None:
        assert monkeypatch is not None
        import io

        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(list(argv))
    out, err = capsysbinary.readouterr()
    assert b"Traceback" not in err and b"Traceback" not in out
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def fetched(tmp_path: Path, service: Service, capsysbinary: Any) -> Path:
    code, out, err = run(capsysbinary, "offline", "fetch", "--from", service.url, "--dir", str(tmp_path), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["bundle"] == str(tmp_path / BUNDLE_FILE)
    return tmp_path


# --- the good path -----------------------------------------------------------------------
def test_fetch_then_verify_with_no_network(tmp_path: Path, service: Service, capsysbinary: Any) -> None:
    code, out, err = run(capsysbinary, "offline", "fetch", "--from", service.url, "--dir", str(tmp_path), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["trust_list"]["status_keys"] >= 1 and summary["trust_list"]["issuer_keys"] >= 1
    assert set(summary["status_lists"]) == {"permits", "cards"} and summary["receipt_keys"] == 1
    assert summary["status_lists"]["permits"]["sub"] == service.url + PATH + "/permits"
    valid = service.permit(lambda r: r.status == "active")
    text, _ = service.upstream.mint_wp1(valid.pn)
    code, out, err = run(capsysbinary, "offline", "verify", "--dir", str(tmp_path), "--json", text)
    verdict = json.loads(out)
    assert code == 0 and verdict["result"] == "VALID", (verdict, err)
    assert verdict["permit"]["pn"] == valid.pn and verdict["permit"]["status"] == "active"
    assert verdict["index_as_of"]["time"] and 0 <= verdict["lag_s"] < 120
    # the human text says how old the status is
    code, out, _ = run(capsysbinary, "offline", "verify", "--dir", str(tmp_path), text)
    assert code == 0 and out.startswith("VALID (WP1)") and " s old" in out


def test_verdicts_of_each_kind(tmp_path: Path, service: Service, capsysbinary: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    directory = fetched(tmp_path, service, capsysbinary)
    cancelled = service.permit(lambda r: r.status == "cancelled")
    text, _ = service.upstream.mint_wp1(cancelled.pn)  # a code printed before the cancellation
    code, out, _ = run(capsysbinary, "offline", "verify", "--dir", str(directory), "--json", text)
    assert code == 1 and json.loads(out)["result"] == "PERMIT_CANCELLED"
    # minted before status lists: no claim, so no status offline
    active = service.permit(lambda r: r.status == "active")
    key = service.upstream.keys.ring.active
    bare = mint_wp1(key, active, iat=int(time.time()) - 60, iss=f"CN-{active.pn[2:8]}")
    code, out, _ = run(capsysbinary, "offline", "verify", "--dir", str(directory), "--json", bare)
    assert code == 1 and json.loads(out)["reasons"] == ["status.no_claim"]
    # from stdin, and from a file
    code, out, _ = run(capsysbinary, "offline", "verify", "--dir", str(directory), "--json", "-",
                       stdin=(bare + "\n").encode(), monkeypatch=monkeypatch)
    assert code == 1 and json.loads(out)["reasons"] == ["status.no_claim"]
    code_file = tmp_path / "code.txt"
    code_file.write_text(text + "\r\n")
    code, out, _ = run(capsysbinary, "offline", "verify", "--dir", str(directory), "--json", str(code_file))
    assert code == 1 and json.loads(out)["result"] == "PERMIT_CANCELLED"


def test_card_reads(tmp_path: Path, service: Service, capsysbinary: Any) -> None:
    directory = fetched(tmp_path, service, capsysbinary)
    holder = service.permit(lambda r: r.status == "active" and r.ssn is not None and r.cn is not None)
    read = tmp_path / "read.json"
    read.write_text(json.dumps(service.card_read(holder)))
    code, out, err = run(capsysbinary, "offline", "verify", "--dir", str(directory), "--json", str(read))
    verdict = json.loads(out)
    assert code == 0 and verdict["result"] == "VALID" and verdict["profile"] == "CARD", (verdict, err)
    lost = service.permit(lambda r: r.status == "active" and r.ssn is not None
                          and any(c.status != "active" for c in r.cards))
    old_card = next(c.cn for c in lost.cards if c.status != "active")
    read.write_text(json.dumps(service.card_read(lost, old_card)))
    code, out, _ = run(capsysbinary, "offline", "verify", "--dir", str(directory), str(read))
    assert code == 1 and out.startswith("CARD_INVALID (CARD)") and "challenge" in out


# --- verify: bad input ----------------------------------------------------------------------
def test_verify_without_a_bundle(tmp_path: Path, capsysbinary: Any) -> None:
    code, _, err = run(capsysbinary, "offline", "verify", "--dir", str(tmp_path), "WP1:X")
    assert code == 2 and "offline fetch" in err
    (tmp_path / BUNDLE_FILE).write_bytes(b'{"format": "permit-verifier/offline-bundle/1"}')
    code, _, err = run(capsysbinary, "offline", "verify", "--dir", str(tmp_path), "WP1:X")
    assert code == 2 and "no usable bundle" in err


@pytest.mark.parametrize(("content", "exit_code", "what"), [
    (b"hello", 1, "UNSUPPORTED"),                                                  # no prefix
    (b"WP1:%%%", 1, "MALFORMED"),                                                  # not base45
    (b"", 1, "UNSUPPORTED"),                                                       # empty
    (b"\xff\xfe\x00garbage", 2, "neither UTF-8"),                                  # binary
    (b'{"qr": "WP1:..."}', 2, "card read file"),                                   # JSON, no card read
    (b'{"certificate": "!!", "challenge": "", "signature": ""}', 2, "base64"),      # bad base64
    (b'{"certificate": "AAAA", "challenge": "AAAA", "signature": "AAAA"}', 1, "MALFORMED"),  # truncated card
    (b"{not json", 2, "not JSON"),                                                 # broken JSON
    (b"W" * ((1 << 20) + 1), 2, "over"),                                           # oversized
])
def test_verify_bad_input(tmp_path: Path, service: Service, capsysbinary: Any, content: bytes, exit_code: int,
                          what: str) -> None:
    directory = fetched(tmp_path / "bundle", service, capsysbinary)
    given = tmp_path / "input"
    given.write_bytes(content)
    code, out, err = run(capsysbinary, "offline", "verify", "--dir", str(directory), str(given))
    assert code == exit_code
    assert what in (out + err)
    assert "VALID (" not in out.replace("_VALID", "")  # never VALID


def test_a_bundle_past_its_lists_exp(tmp_path: Path, service: Service, capsysbinary: Any) -> None:
    directory = fetched(tmp_path, service, capsysbinary)
    valid = service.permit(lambda r: r.status == "active")
    text, _ = service.upstream.mint_wp1(valid.pn)
    later = str(int(time.time()) + 3600)  # the lists live 120 s here
    code, out, _ = run(capsysbinary, "offline", "verify", "--dir", str(directory), "--json", "--at", later, text)
    verdict = json.loads(out)
    assert code == 1 and (verdict["result"], verdict["reasons"]) == ("STATUS_UNAVAILABLE", ["time.expired"])
    assert verdict["lag_s"] >= 3600


# --- fetch: a service gone wrong --------------------------------------------------------------
SIGNER = IssuerKey.from_seed(bytes(range(1, 33)), ["https://fake.example/v1/status-lists"])


def trust_list_with(*keys: IssuerKey, issuers: tuple[IssuerKey, ...] = ()) -> bytes:
    status = json.loads(signing_keys.public_jwks(KeyRing(keys)))["keys"]
    return json.dumps({"version": "x", "keys": [k.to_jwk() for k in issuers] + status}).encode()


def a_list(name: str = "permits", *, key: IssuerKey = SIGNER, bits: int | None = None, iat: int | None = None,
           exp: int | None = None) -> bytes:
    now = int(time.time())
    iat = now - 5 if iat is None else iat
    return status_list_token(key, sub=f"https://fake.example/v1/status-lists/{name}",
                             bits=bits or (2 if name == "permits" else 1), bit_array=b"\x00" * 4, iat=iat,
                             exp=iat + 600 if exp is None else exp, ttl=60)


def serve(fake: FakeService, *, trust: bytes | None = None, permits: bytes | None = None, cards: bytes | None = None,
          answers: dict[str, Answer] | None = None) -> None:
    fake.answers = {
        "/v1/trust-list": Answer(body=trust if trust is not None else trust_list_with(
            SIGNER, issuers=(IssuerKey.from_seed(bytes(32), ["CN-310000"]),))),
        f"{PATH}/permits": Answer(content_type=MEDIA_TYPE, body=permits if permits is not None else a_list()),
        f"{PATH}/cards": Answer(content_type=MEDIA_TYPE, body=cards if cards is not None else a_list("cards")),
        "/v1/receipt-keys": Answer(body=b'{"keys": []}'),
    }
    fake.answers.update(answers or {})


def test_a_fake_service_with_good_documents_is_fetched(tmp_path: Path, fake_service: FakeService,
                                                       capsysbinary: Any) -> None:
    serve(fake_service)
    code, _, err = run(capsysbinary, "offline", "fetch", "--from", fake_service.url, "--dir", str(tmp_path))
    assert code == 0, err
    assert bundle_bytes(tmp_path)


ISSUER = IssuerKey.from_seed(bytes(32), ["CN-310000"])


@pytest.mark.parametrize(("documents", "said"), [
    (dict(permits=a_list()[:-9]), "refused"),                                   # truncated
    (dict(permits=b"\x00" * (MAX_TOKEN_BYTES + 1)), "more than"),               # oversized
    (dict(permits=a_list(key=ISSUER)), "key.use"),                              # signed by an issuer's key
    (dict(permits=a_list(key=IssuerKey.from_seed(bytes([7]) * 32, ["x"]))), "key.unknown"),  # a stranger's key
    (dict(permits=a_list(bits=1)), "bits"),                                     # a 1-bit permits list
    (dict(cards=a_list("cards", bits=2)), "bits"),                              # a 2-bit cards list
    (dict(permits=a_list(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)), "expired"),  # expired
    (dict(trust=b"{not json"), "not JSON"),                                     # a broken trust list
    (dict(trust=b'{"keys": []}'), "empty"),                                     # an empty one
    (dict(trust=trust_list_with(IssuerKey.from_seed(bytes([9]) * 32, ["x"]))), "key.unknown"),  # other signers
])
def test_fetch_refuses_and_keeps_the_bundle(tmp_path: Path, fake_service: FakeService, capsysbinary: Any,
                                            documents: dict[str, bytes], said: str) -> None:
    serve(fake_service)
    assert run(capsysbinary, "offline", "fetch", "--from", fake_service.url, "--dir", str(tmp_path))[0] == 0
    held = bundle_bytes(tmp_path)
    serve(fake_service, **documents)
    code, _, err = run(capsysbinary, "offline", "fetch", "--from", fake_service.url, "--dir", str(tmp_path))
    assert code == 1 and "nothing written" in err and said in err, err
    assert bundle_bytes(tmp_path) == held
    assert not list(tmp_path.glob(f".{BUNDLE_FILE}.*"))


@pytest.mark.parametrize("answer", [
    Answer(status=503, body=b"{}"),                              # the service unavailable
    Answer(content_type="text/html", body=b"<html>"),           # a captive portal
])
def test_fetch_of_a_list_that_is_not_one(tmp_path: Path, fake_service: FakeService, capsysbinary: Any,
                                         answer: Answer) -> None:
    serve(fake_service, answers={f"{PATH}/cards": answer})
    code, _, err = run(capsysbinary, "offline", "fetch", "--from", fake_service.url, "--dir", str(tmp_path))
    assert code == 1 and "nothing written" in err and bundle_bytes(tmp_path) is None


def test_fetch_never_goes_back_in_time(tmp_path: Path, fake_service: FakeService, capsysbinary: Any) -> None:
    now = int(time.time())
    serve(fake_service, permits=a_list(iat=now - 5))
    assert run(capsysbinary, "offline", "fetch", "--from", fake_service.url, "--dir", str(tmp_path))[0] == 0
    held = bundle_bytes(tmp_path)
    serve(fake_service, permits=a_list(iat=now - 50))  # a lagging replica's older list
    code, _, err = run(capsysbinary, "offline", "fetch", "--from", fake_service.url, "--dir", str(tmp_path))
    assert code == 1 and "older" in err and bundle_bytes(tmp_path) == held


def test_fetch_usage_errors(tmp_path: Path, capsysbinary: Any) -> None:
    assert run(capsysbinary, "offline", "fetch", "--from", "ftp://x", "--dir", str(tmp_path))[0] == 2
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert run(capsysbinary, "offline", "fetch", "--from", "http://127.0.0.1:9", "--dir", str(a_file))[0] == 2
    code, _, err = run(capsysbinary, "offline", "fetch", "--from", "http://127.0.0.1:9", "--dir", str(tmp_path))
    assert code == 1 and "nothing written" in err  # nothing listens on the discard port


def test_a_fetch_killed_mid_download_leaves_the_bundle(tmp_path: Path, fake_service: FakeService,
                                                       capsysbinary: Any) -> None:
    serve(fake_service)
    assert run(capsysbinary, "offline", "fetch", "--from", fake_service.url, "--dir", str(tmp_path))[0] == 0
    held = bundle_bytes(tmp_path)
    serve(fake_service, permits=a_list(iat=int(time.time())),
          answers={f"{PATH}/cards": Answer(content_type=MEDIA_TYPE, body=a_list("cards"), stall_s=30)})
    fake_service.seen.clear()
    process = subprocess.Popen([sys.executable, "-m", "verifier", "offline", "fetch", "--from", fake_service.url,
                                "--dir", str(tmp_path), "--timeout", "60"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: f"{PATH}/cards" in fake_service.seen, 30, "the fetch to ask for the cards list")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    assert bundle_bytes(tmp_path) == held
    assert not list(tmp_path.glob(f".{BUNDLE_FILE}.*"))


def test_the_commands_exit_codes_from_a_real_process(tmp_path: Path, service: Service) -> None:
    fetch = subprocess.run([sys.executable, "-m", "verifier", "offline", "fetch", "--from", service.url, "--dir",
                            str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert fetch.returncode == 0 and "bundle written" in fetch.stdout, fetch.stderr
    text, _ = service.upstream.mint_wp1(service.permit(lambda r: r.status == "active").pn)
    verify = subprocess.run([sys.executable, "-m", "verifier", "offline", "verify", "--dir", str(tmp_path), text],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stdout.startswith("VALID"), verify.stderr
    bad = subprocess.run([sys.executable, "-m", "verifier", "offline", "verify", "--dir", str(tmp_path), "WP1:AB"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
