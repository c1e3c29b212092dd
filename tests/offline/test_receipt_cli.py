"""``verifier receipt verify``: a receipt of the real service checked with its keys from the URL,
from a saved JWK Set and from an offline bundle (no network); tampered, unsigned, foreign and
broken inputs each a clear answer (exit 1 or 2), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Service
from .test_offline_cli import fetched, run


@pytest.fixture(scope="module")
def receipt_verdict(service: Service) -> dict[str, Any]:
    record = service.permit(lambda r: r.status == "cancelled")
    text, _ = service.upstream.mint_wp1(record.pn)
    response = httpx.post(f"{service.url}/v1/verify/qr", json={"qr": text, "terminal": "T-9", "receipt": True},
                          headers={"Authorization": f"Bearer {service.token}"}, timeout=10)
    assert response.status_code == 200
    verdict = response.json()
    assert verdict["result"] == "PERMIT_CANCELLED" and "receipt" in verdict
    return verdict  # type: ignore[no-any-return]


def write(tmp_path: Path, document: Any, name: str = "verdict.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_a_receipt_checked_with_the_services_keys(tmp_path: Path, service: Service, receipt_verdict: dict[str, Any],
                                                  capsysbinary: Any) -> None:
    file = write(tmp_path, receipt_verdict)
    code, out, err = run(capsysbinary, "receipt", "verify", file, "--keys", service.url)
    assert code == 0, err
    assert out.startswith("receipt valid") and receipt_verdict["permit"]["pn"] in out
    assert "PERMIT_CANCELLED" in out and receipt_verdict["checked_at"] in out and receipt_verdict["receipt"]["kid"] in out
    code, out, _ = run(capsysbinary, "receipt", "verify", file, "--keys", f"{service.url}/v1/receipt-keys", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["valid"] is True and shown["result"] == "PERMIT_CANCELLED"
    assert shown["permit"] == receipt_verdict["permit"]["pn"] and shown["signed_by"] == receipt_verdict["receipt"]["kid"]


def test_a_receipt_checked_offline(tmp_path: Path, service: Service, receipt_verdict: dict[str, Any],
                                   capsysbinary: Any) -> None:
    file = write(tmp_path, receipt_verdict)
    bundle = fetched(tmp_path / "bundle", service, capsysbinary)
    assert run(capsysbinary, "receipt", "verify", file, "--keys", str(bundle))[0] == 0
    keys = write(tmp_path, httpx.get(f"{service.url}/v1/receipt-keys").json(), "keys.json")
    assert run(capsysbinary, "receipt", "verify", file, "--keys", keys)[0] == 0


@pytest.mark.parametrize(("change", "said"), [
    (lambda v: {**v, "result": "VALID", "reasons": []}, "differs"),                     # the answer changed
    (lambda v: {**v, "permit": {**v["permit"], "pn": "WP0000000000000000"}}, "differs"),  # another permit
    (lambda v: {k: x for k, x in v.items() if k != "receipt"}, "no receipt"),            # no receipt
    (lambda v: {**v, "receipt": {**v["receipt"], "kid": "AAAAAAAAAAA"}}, "kid"),          # another key's
    (lambda v: {**v, "receipt": {**v["receipt"], "signature": "A" * 86}}, "does not verify"),  # forged
    (lambda v: {**v, "receipt": {**v["receipt"], "alg": "ES256"}}, "alg"),               # another algorithm
    (lambda v: {**v, "receipt": "yes"}, "no receipt"),                                   # not an object
])
def test_a_receipt_that_does_not_hold(tmp_path: Path, service: Service, receipt_verdict: dict[str, Any],
                                      capsysbinary: Any, change: Any, said: str) -> None:
    file = write(tmp_path, change(receipt_verdict))
    code, out, _ = run(capsysbinary, "receipt", "verify", file, "--keys", service.url)
    assert code == 1 and out.startswith("receipt NOT valid") and said in out


@pytest.mark.parametrize(("content", "keys", "said"), [
    (b"{not json", None, "not JSON"),                      # the verdict file broken
    (b"[1, 2]", None, "no verdict"),                       # not an object
    (b"{}", "", "--keys is needed"),                       # no keys given
    (b"{}", "http://127.0.0.1:9", "cannot fetch"),         # keys unreachable
    (b"{}", "missing.json", "cannot read"),                # a keys file missing
    (b"{}", "bad-keys.json", "no JWK Set"),                # a keys file that is none
])
def test_usage_errors(tmp_path: Path, service: Service, capsysbinary: Any, content: bytes, keys: str | None,
                      said: str) -> None:
    verdict = tmp_path / "verdict.json"
    verdict.write_bytes(content)
    (tmp_path / "bad-keys.json").write_text('{"keys": "none"}')
    argv = ["receipt", "verify", str(verdict)]
    if keys is None:
        argv += ["--keys", service.url]
    elif keys:
        argv += ["--keys", keys if keys.startswith("http") else str(tmp_path / keys)]
    code, _, err = run(capsysbinary, *argv)
    assert code == 2 and said in err, err
