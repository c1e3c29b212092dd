"""The store of record apart from the index's Redis (defect 1 of issue 11).

The index is a cache of the upstream; API keys, the receipt key and the audit are
not. With ``store_url`` set they live in a Redis of their own: a FLUSHALL of the
index's Redis costs a resync and nothing else, and an outage of the store stops
neither verification nor the audit (which waits in its files).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from verifier.api.audit.stream import AUDIT_STREAM
from verifier.api.auth.keys import CACHE_TTL_S
from verifier.cli import main
from verifier.index.keys import KeyLayout, Pointer
from verifier.issuing import IssuerKey
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis
from tests.api.conftest import PERMITS, IndexHelper, World, make_world, open_client, wait_until

QR = "/v1/verify/qr"


@pytest.fixture
def store_server(redis_server_factory: Any) -> EmbeddedRedis:
    return redis_server_factory(persist=True, appendfsync="always")  # type: ignore[no-any-return]


@pytest.fixture
def split_world(redis_url: str, redis_sync: Any, issuer: IssuerKey, tmp_path: Path,
                store_server: EmbeddedRedis) -> World:
    return make_world(redis_url, redis_sync, issuer, tmp_path / "state", store_url=store_server.url)


def scan(client: Any, world: World, terminal: str, permit: str = "valid") -> Any:
    return client.post(QR, json={"qr": world.wp1(PERMITS[permit]), "terminal": terminal},
                       headers=world.headers("exit_entry"))


def audited(url: str) -> list[dict[str, Any]]:
    client = sync_client(url)
    try:
        return [r for _i, f in client.xrange(AUDIT_STREAM) for r in orjson.loads(f[b"r"]) if r["kind"] != "checkpoint"]
    finally:
        client.close()


def test_a_flushed_index_costs_a_resync_not_the_keys_nor_the_audit(
        split_world: World, store_server: EmbeddedRedis, capsys: pytest.CaptureFixture[str]) -> None:
    world = split_world
    client = open_client(world.settings())
    try:
        assert all(scan(client, world, "BEFORE").json()["result"] == "VALID" for _ in range(3))
        world.redis_sync.flushall()  # the index's Redis loses everything
        during = wait_until(lambda: (a := scan(client, world, "DURING")).json()["result"] != "VALID" and a,
                            what="the worker to see the index gone")
        assert during.status_code == 200 and during.json()["reasons"] == ["status.index_not_ready"]
        # A worker that never saw the key (an empty cache) still lets it in: the key is in the store.
        fresh = open_client(world.settings())
        try:
            answer = scan(fresh, world, "DURING")
            assert answer.status_code == 200, answer.text
            assert answer.json()["result"] == "STATUS_UNAVAILABLE"
            # The sync job's rebuild (here: as it writes it): the trust list and a new generation.
            world.store_trust_list()
            world.index = IndexHelper(world.redis_sync)
            world.index.load(list(PERMITS.values()))
            for worker in (client, fresh):
                wait_until(lambda: scan(worker, world, "AFTER").json()["result"] == "VALID", timeout_s=5,
                           what="VALID again after the rebuild")
        finally:
            fresh.__exit__(None, None, None)
    finally:
        client.__exit__(None, None, None)
    records = audited(store_server.url)
    terminals = [r["terminal"] for r in records]
    assert terminals.count("BEFORE") == 3 and "DURING" in terminals and "AFTER" in terminals
    assert not world.redis_sync.exists(AUDIT_STREAM)  # nothing of record in the index's Redis
    assert main(["audit", "verify", "--store", store_server.url]) == 0, capsys.readouterr().out


def test_a_revocation_reaches_every_worker_through_the_store(split_world: World, store_server: EmbeddedRedis,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    world = split_world
    workers = [open_client(world.settings()), open_client(world.settings())]
    try:
        for worker in workers:
            assert scan(worker, world, "T").status_code == 200  # the key is in each worker's cache now
        revoked_at = time.monotonic()
        assert main(["api-keys", "revoke", world.key_id["exit_entry"], "--store", store_server.url]) == 0
        for worker in workers:
            wait_until(lambda: scan(worker, world, "T").status_code == 401, timeout_s=CACHE_TTL_S,
                       what="the revocation")
        assert time.monotonic() - revoked_at < CACHE_TTL_S  # the message's doing, not the cache's expiry
    finally:
        for worker in workers:
            worker.__exit__(None, None, None)
    # The key was never in the index's Redis.
    assert not world.redis_sync.keys("pv:apikey*")
    capsys.readouterr()


def test_a_store_outage_keeps_verification_going_and_loses_no_audit(split_world: World,
                                                                    store_server: EmbeddedRedis) -> None:
    world = split_world
    client = open_client(world.settings())
    try:
        assert scan(client, world, "UP").json()["result"] == "VALID"
        store_server.stop()
        # The index is untouched: verdicts stay right (VALID), with the key this worker has read.
        answers = [scan(client, world, "STORE-DOWN") for _ in range(20)]
        assert [a.json()["result"] for a in answers] == ["VALID"] * 20
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["store"] is False
        # A key this worker never read cannot be checked now: 503, not 401.
        unseen = client.post(QR, json={"qr": world.wp1(PERMITS["valid"]), "terminal": "X"},
                             headers=world.headers("service_hall"))
        assert unseen.status_code == 503
        # Past the bound on trusting what it read, not even a known key.
        client.app.state.runtime.keys.stale_limit_s = 0.2
        wait_until(lambda: scan(client, world, "STALE").status_code == 503, timeout_s=5,
                   what="the key cache to stop being trusted")
        store_server.start()  # same port, its AOF kept
        client.app.state.runtime.keys.stale_limit_s = 300.0
        wait_until(lambda: sum(r["terminal"] == "STORE-DOWN" for r in audited(store_server.url)) == 20,
                   timeout_s=10, what="the records of the outage in the store")
        assert scan(client, world, "BACK").json()["result"] == "VALID"
    finally:
        client.__exit__(None, None, None)
    terminals = [r["terminal"] for r in audited(store_server.url)]
    assert terminals.count("UP") == 1 and terminals.count("STORE-DOWN") == 20 and terminals.count("BACK") == 1


@pytest.mark.slow
def test_flushall_of_the_demo_index_is_rebuilt_by_the_sync_job_and_every_answer_stays_audited(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole service as the demo runs it (two private Redis servers, the simulator, the sync job, the
    API with 2 workers): FLUSHALL of the index's Redis while scans go on."""
    import threading

    import httpx

    from verifier.run.demo import DemoOptions, DemoStack, create_demo_keys
    from tests.api.test_end_to_end import PERMITS as E2E_PERMITS, SEED, active_permit_numbers

    options = DemoOptions(state_dir=tmp_path / "demo", port=0, workers=2, permits=E2E_PERMITS, seed=SEED,
                          event_rate=0.0, rate_limit_per_s=100_000.0)
    with DemoStack(options) as stack:
        assert stack.redis_url != stack.store_url
        token = create_demo_keys(stack.store_url, ["91110000100000000A"])["exit_entry"]["token"]
        pn = active_permit_numbers(1)[0]
        http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)
        code = http.post(f"{stack.upstream_url}/issue/wp1", json={"pn": pn}).json()["qr"]
        answers: list[tuple[float, int, str]] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                reply = http.post(f"{stack.api_url}/v1/verify/qr", json={"qr": code, "terminal": "FLUSH-TEST"},
                                  headers={"Authorization": f"Bearer {token}"})
                answers.append((time.monotonic(), reply.status_code,
                                reply.json().get("result", "") if reply.status_code == 200 else ""))

        sender = threading.Thread(target=load)
        sender.start()
        try:
            wait_until(lambda: sum(r == "VALID" for _t, _s, r in answers) >= 20, timeout_s=30, what="VALID answers")
            index = sync_client(stack.redis_url)
            layout = KeyLayout()
            try:
                before = Pointer.parse(index.get(layout.current))
                assert before is not None
                flushed_at = time.monotonic()
                index.flushall()
                # The sync job sees its generation gone and loads a new one from the upstream's snapshot.
                # Any pointer after the flush is the rebuild's (the flush took the old one, and the
                # generation counter with it: the new generation may well be number 1 again).
                wait_until(lambda: Pointer.parse(index.get(layout.current)) is not None, timeout_s=60,
                           what="the sync job's rebuild")
                rebuilt_at = time.monotonic()
            finally:
                index.close()
            print(f"\nFLUSHALL of the index -> a new generation after {rebuilt_at - flushed_at:.2f} s")
            wait_until(lambda: [r for _t, _s, r in answers[-5:]] == ["VALID"] * 5, timeout_s=30,
                       what="VALID answers after the rebuild")
        finally:
            stop.set()
            sender.join(timeout=30)
        statuses = {s for _t, s, _r in answers}
        assert statuses == {200}, statuses  # never a 401 (the keys are in the store), never a 5xx
        answered = len(answers)
        # every answered scan has its audit record in the store, once
        wait_until(lambda: sum(r["terminal"] == "FLUSH-TEST" for r in audited(stack.store_url)) >= answered,
                   timeout_s=10, what="every answer's audit record")
        records = [r for r in audited(stack.store_url) if r["terminal"] == "FLUSH-TEST"]
        assert len(records) == answered == len({r["id"] for r in records})
    assert main(["audit", "verify", "--files", str(stack.audit_path)]) == 0, capsys.readouterr().out
