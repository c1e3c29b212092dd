"""The holder scenario against a real HTTP server that keeps the holder API's contract (issue 12).

The service's holder endpoints are built elsewhere; until they are, this server keeps
their contract so that the scenario's requests and checks are exercised end to end by
the real generator: ``POST /v1/holder/session`` (the e-card platform's key, a fresh
``ES1:`` code, verified here with the real verifier against the simulator twin's
trust list and accepted once) gives ``{"token", "expires_at"}``; ``GET
/v1/holder/permit`` and ``GET /v1/holder/verifications`` take it in ``X-Holder-Token``;
a token that does not exist gets a 401 problem document.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import fastpath
from loadtests import plan as plans
from loadtests.run import run_generators
from verifier.upstream.simulator import Upstream

pytestmark = [pytest.mark.slow]

PLATFORM_KEY = "pvk_test_platform"
SEED, PERMITS = 3, 200


class HolderContract:
    def __init__(self, trust: fastpath.TrustList) -> None:
        self.trust = trust
        self.sessions: dict[str, str] = {}
        self.seen_codes: set[str] = set()
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}


def handler_for(contract: HolderContract) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: dict[str, Any], problem: bool = False) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/problem+json" if problem else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refuse(self, status: int, title: str) -> None:
            self.answer(status, {"type": "about:blank", "status": status, "title": title}, problem=True)

        def platform(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {PLATFORM_KEY}":
                self.refuse(401, "an essc_platform key is required")
                return False
            return True

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/holder/session":
                return self.refuse(404, "no such endpoint")
            if not self.platform():
                return None
            code = json.loads(body)["code"]
            verdict = fastpath.verify_qr(code, self.server_trust(), cache=False)
            with contract.lock:
                replayed = code in contract.seen_codes
                contract.seen_codes.add(code)
                if verdict.result != "VALID" or replayed or not code.startswith("ES1:"):
                    return self.refuse(422, "the code does not sign in")
                token = secrets.token_urlsafe(24)
                contract.sessions[token] = verdict.permit["pn"]
                contract.calls["session"] = contract.calls.get("session", 0) + 1
            expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)).isoformat()
            return self.answer(200, {"token": token, "expires_at": expires})

        def server_trust(self) -> fastpath.TrustList:
            return contract.trust

        def do_GET(self) -> None:  # noqa: N802
            if not self.platform():
                return
            with contract.lock:
                pn = contract.sessions.get(self.headers.get("X-Holder-Token") or "")
            if pn is None:
                return self.refuse(401, "no such holder session")
            if self.path == "/v1/holder/permit":
                return self.answer(200, {"permit": {"pn": pn, "status": "active"}, "lag_s": 0.1})
            if self.path.startswith("/v1/holder/verifications"):
                return self.answer(200, {"items": [], "next": None})
            return self.refuse(404, "no such endpoint")

    return Handler


@pytest.fixture
def holder_api() -> Iterator[tuple[str, HolderContract, Upstream]]:
    twin = Upstream.create(permits=PERMITS, seed=SEED)
    contract = HolderContract(fastpath.TrustList.from_jwks(json.dumps(twin.trust_list()).encode()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(contract))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", contract, twin
    finally:
        server.shutdown()
        server.server_close()


def test_the_holder_scenario_signs_in_reads_and_gets_problems_for_bad_tokens(
        tmp_path: Path, holder_api: tuple[str, HolderContract, Upstream]) -> None:
    url, contract, twin = holder_api
    data = tmp_path / "data"
    data.mkdir()
    holders = [twin.record_at(i) for i in range(PERMITS)]
    es1 = [{"pn": r.pn, "expect": "VALID"} for r in holders
           if r.status == "active" and r.cn and r.ssn and r.vf <= dt.date.today().isoformat() < r.vt][:20]
    assert es1, "the twin has no permit that can show an ES1 code"
    (data / "es1.ndjson").write_text("".join(json.dumps(row) + "\n" for row in es1))
    (data / "keys.json").write_text(json.dumps({"essc_platform": [PLATFORM_KEY]}))
    (data / "meta.json").write_text(json.dumps({"url": url, "twin": {
        "permits": PERMITS, "seed": SEED, "as_of": dt.datetime.now(dt.timezone.utc).date().isoformat()}}))
    steps = plans.Steps(duration_s=2.0, steps=1, start_rps=25, settle_s=0.0, idle_s=0.0)
    the_plan = plans.build(["holder"], steps, None, generators=1, target=url, data_dir=str(data),
                           arrivals="uniform", bad_share=0.2, closed_pace=10.0, connections=20,
                           max_in_flight=500, request_timeout_s=10.0, drain_s=11.0, seed=5)
    results = run_generators(the_plan, tmp_path / "run")
    requests = results["phases"][0]["requests"]
    assert {"/v1/holder/session", "/v1/holder/permit", "/v1/holder/verifications",
            "/v1/holder/permit [bad token]"} <= set(requests)
    for name, stats in requests.items():
        assert stats["count"] > 0 and stats["failures"] == 0, (name, stats["errors"])
    # Each sign-in used a fresh code, accepted once; every token read back the permit it was for.
    assert contract.calls["session"] == len(contract.seen_codes) == len(contract.sessions)
    assert set(contract.sessions.values()) <= {row["pn"] for row in es1}
