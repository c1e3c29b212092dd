"""Status is never guessed: Redis away, index not ready or stale, changes pushed by pub/sub, trust list swaps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from verifier.api.audit.log import AUDIT_STREAM
from verifier.api.verdicts.near_cache import NearCache
from verifier.index.trust_store import TRUST_CHANNEL, TRUST_KEY
from verifier.issuing import IssuerKey
from verifier.issuing.keys import trust_list
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis
from tests.api.conftest import ISSUER, PERMITS, World, make_world, open_client, wait_until

QR = "/v1/verify/qr"


def scan(client: Any, world: World, text: str, terminal: str = "T-1", role: str = "exit_entry") -> dict[str, Any]:
    response = client.post(QR, json={"qr": text, "terminal": terminal}, headers=world.headers(role))
    assert response.status_code == 200, response.text  # never a 5xx, whatever Redis does
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def own_world(own_redis_server: EmbeddedRedis, issuer: IssuerKey, tmp_path: Path) -> Iterator[tuple[World, EmbeddedRedis]]:
    redis_sync = sync_client(own_redis_server.url)
    try:
        yield make_world(own_redis_server.url, redis_sync, issuer, tmp_path / "state"), own_redis_server
    finally:
        redis_sync.close()


def test_redis_stopped_then_back(own_world: tuple[World, EmbeddedRedis]) -> None:
    world, server = own_world
    client = open_client(world.settings())
    try:
        text = world.wp1(PERMITS["valid"])
        assert scan(client, world, text)["result"] == "VALID"  # and now in the near-cache

        server.stop()
        # The worker notices within its poll (0.25 s) and its subscription's failure;
        # from then on every scan says STATUS_UNAVAILABLE, the near-cache included.
        down = wait_until(lambda: (v := scan(client, world, text))["result"] == "STATUS_UNAVAILABLE" and v,
                          what="STATUS_UNAVAILABLE with Redis stopped")
        assert down["reasons"] == ["status.unavailable"]
        for code in (text, world.es1(PERMITS["valid"]), world.wp1(PERMITS["cancelled"])):
            verdict = scan(client, world, code)
            assert verdict["result"] == "STATUS_UNAVAILABLE"
            assert verdict["permit"]["pn"]  # the signed data is still shown
        assert scan(client, world, "WP1:nonsense")["result"] == "MALFORMED"  # no Redis needed for that
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/live").status_code == 200
        assert client.post("/v1/cards/challenge", headers=world.headers("exit_entry")).status_code == 503
        lookup = client.post("/v1/permits/lookup", json={"by": "pn", "ids": ["X"]}, headers=world.headers("admin"))
        assert lookup.status_code == 503 and lookup.headers["retry-after"]

        server.start()  # same port, data kept (append-only file)
        wait_until(lambda: scan(client, world, text)["result"] == "VALID", timeout_s=10, what="recovery")
        assert scan(client, world, world.es1(PERMITS["valid"]))["result"] == "VALID"
        assert wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s=5)
        # what was answered during the outage reached the audit stream afterwards
        redis = sync_client(server.url)
        try:
            results = wait_until(
                lambda: [r["result"] for _i, f in redis.xrange(AUDIT_STREAM)
                         for r in orjson.loads(f[b"r"])].count("STATUS_UNAVAILABLE") >= 4,
                timeout_s=5, what="the outage's audit records")
            assert results
        finally:
            redis.close()
    finally:
        client.__exit__(None, None, None)


def test_a_cancellation_reaches_every_worker_through_pubsub(world: World) -> None:
    permit = PERMITS["valid"]
    workers = [open_client(world.settings()), open_client(world.settings())]
    try:
        for client in workers:
            # an ES1 code per scan, so that the replay guard does not interfere
            assert scan(client, world, world.es1(permit))["result"] == "VALID"
            assert client.app.state.runtime.near_cache.get(permit.pn) is not NearCache.MISS  # cached
        cancelled_at = time.monotonic()
        world.index.change(msgspec.structs.replace(permit, status="cancelled", v=permit.v + 1), "cancel")
        for client in workers:
            cache = client.app.state.runtime.near_cache
            # Entries live NearCache.TTL_S (60 s): a drop well before that is the pub/sub message's doing.
            wait_until(lambda: cache.get(permit.pn) is NearCache.MISS, timeout_s=3, what="the cancellation message")
            assert scan(client, world, world.es1(permit))["result"] == "PERMIT_CANCELLED"
        assert time.monotonic() - cancelled_at < NearCache.TTL_S / 2
    finally:
        for client in workers:
            client.__exit__(None, None, None)


def test_index_not_ready_is_status_unavailable_never_not_found(client: Any, world: World) -> None:
    assert scan(client, world, world.wp1(PERMITS["valid"]))["result"] == "VALID"
    world.redis_sync.delete(b"{pv}:current")  # what a FLUSHALL or an unfinished first load leaves
    verdict = wait_until(lambda: (v := scan(client, world, world.wp1(PERMITS["valid"])))["result"] != "VALID" and v)
    assert (verdict["result"], verdict["reasons"]) == ("STATUS_UNAVAILABLE", ["status.index_not_ready"])
    assert scan(client, world, world.wp1(PERMITS["cancelled"]))["result"] == "STATUS_UNAVAILABLE"
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["index"] == "status.index_not_ready"
    manual = client.post("/v1/verify/manual", json={"pn": "WP0", "dob": "2000-01-01", "terminal": "D"},
                         headers=world.headers("exit_entry")).json()
    assert manual["result"] == "STATUS_UNAVAILABLE"  # not PERMIT_NOT_FOUND: an empty index proves nothing


def test_a_stale_index_is_status_unavailable_until_confirmed_again(world: World) -> None:
    client = open_client(world.settings(staleness_bound_s=1.0))
    try:
        text = world.wp1(PERMITS["valid"])
        # Confirmed just now: the app's start-up on a loaded machine can take longer than the 1 s bound.
        world.index.heartbeat()
        wait_until(lambda: scan(client, world, text)["result"] == "VALID", timeout_s=3)
        verdict = wait_until(lambda: (v := scan(client, world, text))["result"] != "VALID" and v, timeout_s=5)
        assert (verdict["result"], verdict["reasons"]) == ("STATUS_UNAVAILABLE", ["status.index_stale"])
        assert verdict["lag_s"] >= 1.0  # over the bound, shown to the millisecond (1.0004 is 1.0)
        world.index.heartbeat()
        wait_until(lambda: scan(client, world, text)["result"] == "VALID", timeout_s=3)
    finally:
        client.__exit__(None, None, None)


def test_a_new_trust_list_is_taken_at_once(client: Any, world: World) -> None:
    newcomer = IssuerKey.generate([ISSUER])
    text = world.wp1(PERMITS["valid"], key=newcomer)
    assert scan(client, world, text)["result"] == "UNKNOWN_KEY"
    before = client.get("/v1/trust-list").json()["version"]
    world.store_trust_list(world.issuer, world.revoked, newcomer)
    wait_until(lambda: client.get("/v1/trust-list").json()["version"] != before, timeout_s=3)
    served = client.get("/v1/trust-list")
    assert served.headers["etag"] == f'"{served.json()["version"]}"'
    assert len(served.json()["keys"]) == 3
    assert scan(client, world, text)["result"] == "VALID"


def test_a_bad_trust_list_is_refused_and_the_previous_stays(client: Any, world: World) -> None:
    before = client.get("/v1/trust-list").json()
    good = trust_list([world.issuer])
    bad = {"keys": [{**good["keys"][0], "kid": "AAAAAAAAAAA"}]}  # kid not SHA-256(x)[:8]
    world.redis_sync.set(TRUST_KEY, orjson.dumps(bad))  # as if written around save_trust_list's check
    world.redis_sync.publish(TRUST_CHANNEL, "bad")
    wait_until(lambda: client.app.state.runtime.trust.refused_digest is not None, timeout_s=3)
    assert client.get("/v1/trust-list").json() == before
    assert scan(client, world, world.wp1(PERMITS["valid"]))["result"] == "VALID"
