"""The index's Redis broken under a running `verifier serve` (2 workers): paused, killed, flushed.

Status is never guessed (DESIGN), and the worker never waits on a Redis that does not
answer: every answer arrives (a generous client timeout stands for "never hangs"), no
VALID once the state is unknown, and the service recovers by itself. Each test prints
its figures (``pytest -s``), which the README's "When Redis fails" table reports.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import PERMITS, IndexHelper, World, make_world, open_client, wait_until
from tests.api.servers import Server
from verifier.api.audit.log import AUDIT_STREAM
from verifier.issuing import IssuerKey
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis

NEVER_HANGS_S = 5.0
"""An answer slower than this counts as a hang (the bound the service keeps is 1 s)."""


@pytest.fixture
def fault_world(own_redis_server: EmbeddedRedis, redis_server_factory: Any, issuer: IssuerKey,
                tmp_path: Path) -> Iterator[tuple[World, EmbeddedRedis]]:
    """The index in a Redis of its own (AOF: it survives kill -9), the keys and the audit in a store apart."""
    store = redis_server_factory(persist=True)
    index_sync = sync_client(own_redis_server.url)
    try:
        yield make_world(own_redis_server.url, index_sync, issuer, tmp_path / "state", store_url=store.url), \
            own_redis_server
    finally:
        index_sync.close()


class Probe:
    """Sends a steady mix (a near-cached WP1 scan, a permit read, a look-up) and keeps every answer."""

    def __init__(self, server: Server, world: World) -> None:
        self.server, self.world = server, world
        self.http = httpx.Client(base_url=server.url, timeout=NEVER_HANGS_S,
                                 limits=httpx.Limits(max_keepalive_connections=0))  # either worker
        self.code = world.wp1(PERMITS["valid"])
        self.pn = PERMITS["valid"].pn
        self.answers: list[dict[str, Any]] = []

    def scan(self) -> dict[str, Any]:
        response = self._send("verify", "POST", "/v1/verify/qr", json={"qr": self.code, "terminal": "F-1"},
                              headers=self.world.headers("exit_entry"))
        assert response.status_code == 200, response.text  # a verdict whatever Redis does
        verdict = response.json()
        self.answers[-1]["result"] = verdict["result"]
        self.answers[-1]["reasons"] = verdict["reasons"]
        return verdict  # type: ignore[no-any-return]

    def read(self) -> httpx.Response:
        return self._send("permit", "GET", f"/v1/permits/{self.pn}", headers=self.world.headers("exit_entry"))

    def lookup(self) -> httpx.Response:
        return self._send("lookup", "POST", "/v1/permits/lookup", json={"by": "pn", "ids": [self.pn]},
                          headers=self.world.headers("admin"))

    def _send(self, kind: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        response = self.http.request(method, path, **kwargs)  # a hang raises httpx.ReadTimeout: the test fails
        self.answers.append({"kind": kind, "at": started, "took": time.monotonic() - started,
                             "status": response.status_code})
        if kind != "verify":
            assert response.status_code in (200, 503), response.text  # never a 500
            if response.status_code == 503:
                assert response.headers["content-type"].startswith("application/problem+json")
                assert int(response.headers["retry-after"]) >= 1
        return response

    def round(self) -> None:
        self.scan()
        self.read()
        self.lookup()

    def since(self, t: float) -> list[dict[str, Any]]:
        return [a for a in self.answers if a["at"] >= t]

    def close(self) -> None:
        self.http.close()


def _figures(name: str, **figures: Any) -> None:
    print(f"\n{name}: " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


def _recovered(probe: Probe, timeout_s: float, what: str) -> float:
    """When the first of 8 VALID scans in a row was sent (new connections: both workers answer some)."""
    deadline = time.monotonic() + timeout_s
    streak: list[float] = []
    while len(streak) < 8:
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        probe.scan()
        streak = streak + [probe.answers[-1]["at"]] if probe.answers[-1]["result"] == "VALID" else []
    return streak[0]


def _warm(probe: Probe) -> None:
    for _ in range(10):  # both workers' near-caches hold the permit
        assert probe.scan()["result"] == "VALID"
        assert probe.read().status_code == 200


def test_a_paused_redis_is_status_unavailable_at_once_and_leaves_no_backlog(
        fault_world: tuple[World, EmbeddedRedis], tmp_path: Path) -> None:
    world, redis = fault_world
    server = Server(world, 2, tmp_path / "serve.log")
    probe = Probe(server, world)
    try:
        server.wait_ready()
        _warm(probe)
        assert redis.pid is not None
        os.kill(redis.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            while time.monotonic() - stopped_at < 3.0:
                probe.round()
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        during = probe.since(stopped_at)
        verdicts = [a for a in during if a["kind"] == "verify"]
        assert {a["result"] for a in verdicts} <= {"VALID", "STATUS_UNAVAILABLE"}
        # Past the freshness bound (0.45 s; 1.5 s here, for a loaded machine) no cached status answers.
        late = [a["result"] for a in verdicts if a["at"] - stopped_at > 1.5]
        assert late and set(late) == {"STATUS_UNAVAILABLE"}, late
        assert {a["status"] for a in during if a["kind"] != "verify" and a["at"] - stopped_at > 1.5} == {503}

        # Resumed: serving normally again by itself, with nothing queued in front of the new requests.
        recovered_at = _recovered(probe, timeout_s=10, what="VALID from both workers after SIGCONT")
        for _ in range(10):
            probe.round()
            assert probe.answers[-3]["result"] == "VALID", probe.answers[-3]
            assert [a["status"] for a in probe.answers[-2:]] == [200, 200]
        first_unavailable = min(a["at"] for a in verdicts if a["result"] == "STATUS_UNAVAILABLE")
        _figures("SIGSTOP 3 s", requests=len(during),
                 slowest_answer_s=max(a["took"] for a in during),
                 last_valid_after_stop_s=max((a["at"] - stopped_at for a in verdicts if a["result"] == "VALID"),
                                             default=0.0),
                 first_unavailable_after_stop_s=first_unavailable - stopped_at,
                 recovered_after_sigcont_s=recovered_at - resumed_at)
    finally:
        probe.close()
        server.stop()


def test_a_killed_redis_is_status_unavailable_until_it_is_back_then_serves_by_itself(
        fault_world: tuple[World, EmbeddedRedis], tmp_path: Path) -> None:
    world, redis = fault_world
    server = Server(world, 2, tmp_path / "serve.log")
    probe = Probe(server, world)
    try:
        server.wait_ready()
        _warm(probe)
        time.sleep(1.2)  # the AOF is fsynced every second: the index is on disk
        redis.kill()
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 2.0:
            probe.round()
        during = probe.since(killed_at)
        late = [a["result"] for a in during if a["kind"] == "verify" and a["at"] - killed_at > 1.0]
        assert late and set(late) == {"STATUS_UNAVAILABLE"}, late
        assert {a["status"] for a in during if a["kind"] != "verify" and a["at"] - killed_at > 1.0} == {503}
        health = probe.http.get("/health/ready")
        assert health.status_code == 503 and health.json()["checks"]["redis"] is False

        redis.restart()  # same port, data from its AOF
        back_at = time.monotonic()
        recovered_at = _recovered(probe, timeout_s=10, what="VALID from both workers after the restart")
        wait_until(lambda: probe.http.get("/health/ready").status_code == 200, timeout_s=10, what="ready again")
        for _ in range(5):
            probe.round()
            assert probe.answers[-3]["result"] == "VALID"
            assert [a["status"] for a in probe.answers[-2:]] == [200, 200]
        _figures("kill -9", requests=len(during), slowest_answer_s=max(a["took"] for a in during),
                 recovered_after_restart_s=recovered_at - back_at)
    finally:
        probe.close()
        server.stop()


def test_after_a_flushall_no_endpoint_answers_from_the_near_cache_once_one_sees_the_index_gone(
        fault_world: tuple[World, EmbeddedRedis]) -> None:
    world, _redis = fault_world
    client = open_client(world.settings())
    try:
        runtime = client.app.state.runtime
        code, pn = world.wp1(PERMITS["valid"]), PERMITS["valid"].pn
        scan = {"qr": code, "terminal": "F-2"}
        assert client.post("/v1/verify/qr", json=scan, headers=world.headers("exit_entry")).json()["result"] == "VALID"
        assert client.get(f"/v1/permits/{pn}", headers=world.headers("exit_entry")).status_code == 200
        assert len(runtime.near_cache) > 0
        world.redis_sync.flushall()  # the index only: the keys and the audit are in the store
        lookup = client.post("/v1/permits/lookup", json={"by": "pn", "ids": [pn]}, headers=world.headers("admin"))
        assert lookup.status_code == 503 and "status.index_not_ready" in lookup.json()["detail"]
        # The look-up saw the generation gone: the near-cache went with it, for every endpoint, at once
        # (not at the next poll).
        assert len(runtime.near_cache) == 0
        verdict = client.post("/v1/verify/qr", json=scan, headers=world.headers("exit_entry")).json()
        assert (verdict["result"], verdict["reasons"]) == ("STATUS_UNAVAILABLE", ["status.index_not_ready"])
        read = client.get(f"/v1/permits/{pn}", headers=world.headers("exit_entry"))
        assert read.status_code == 503 and "status.index_not_ready" in read.json()["detail"]

        IndexHelper(world.redis_sync).load(list(PERMITS.values()), seq=200)  # the sync job's rebuild
        wait_until(lambda: client.post("/v1/verify/qr", json=scan, headers=world.headers("exit_entry"))
                   .json()["result"] == "VALID", timeout_s=5, what="VALID on the rebuilt index")
    finally:
        client.__exit__(None, None, None)
    # every answer of the outage was audited (the store of record was not flushed)
    store = sync_client(world.store)
    try:
        results = [r.get("result") for _i, f in store.xrange(AUDIT_STREAM) for r in json.loads(f[b"r"])]
    finally:
        store.close()
    assert results.count("STATUS_UNAVAILABLE") >= 3, results
