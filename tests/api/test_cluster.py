"""With REDIS_URL naming a Redis Cluster: a primary killed -> no 5xx, STATUS_UNAVAILABLE at worst, VALID after failover."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from verifier.issuing import IssuerKey
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import RedisServerError
from tests.api.conftest import PERMITS, make_world, open_client
from tests.support.local_cluster import LocalCluster

pytestmark = pytest.mark.slow


def test_primary_killed_then_failover(redis_cluster: LocalCluster, redis_cluster_url: str, issuer: IssuerKey,
                                      tmp_path: Path) -> None:
    redis_sync = sync_client(redis_cluster_url)
    try:
        world = make_world(redis_cluster_url, redis_sync, issuer, tmp_path)
        client = open_client(world.settings())
        try:
            def scan(text: str, terminal: str) -> dict[str, Any]:
                response = client.post("/v1/verify/qr", json={"qr": text, "terminal": terminal},
                                       headers=world.headers("exit_entry"))
                assert response.status_code == 200, response.text  # never a 5xx
                return response.json()  # type: ignore[no-any-return]

            static = world.wp1(PERMITS["valid"])
            assert scan(static, "T")["result"] == "VALID"
            assert scan(world.es1(PERMITS["valid"]), "T")["result"] == "VALID"
            assert scan(world.wp1(PERMITS["cancelled"]), "T")["result"] == "PERMIT_CANCELLED"

            redis_cluster.wait_replicated()
            slot = redis_cluster.key_slot("{pv}:current")  # the index's slot
            runtime = client.app.state.runtime
            # The near-cache's invalidations are heard on the index's own primary: when
            # it dies, the subscription ends with it and the near-cache goes off at once.
            assert runtime.subscription_node == f"127.0.0.1:{redis_cluster.primary_for_slot(slot).port}"
            dead = redis_cluster.kill_primary("{pv}:current")

            def failed_over() -> bool:
                try:
                    return redis_cluster.primary_for_slot(slot).port != dead.port
                except RedisServerError:
                    return False

            # The outage: never a 5xx and never anything but VALID or STATUS_UNAVAILABLE. (A scan
            # within one freshness poll of the kill may still be VALID from the near-cache.)
            seen: list[str] = []
            deadline = time.monotonic() + 60
            while not failed_over():
                assert time.monotonic() < deadline, "the cluster did not promote a replica within 60 s"
                results = {scan(static, "T")["result"], scan(world.es1(PERMITS["valid"]), "T")["result"]}
                assert results <= {"VALID", "STATUS_UNAVAILABLE"}, results
                seen.extend(results)
                time.sleep(0.1)
            assert "STATUS_UNAVAILABLE" in seen  # the outage was noticed, not papered over

            # After the failover the service recovers by itself, from the promoted replica:
            # status checks, ES1 replay protection and challenges all answer again.
            deadline = time.monotonic() + 30
            while True:
                results = {scan(static, "T")["result"], scan(world.es1(PERMITS["valid"]), "T")["result"]}
                assert results <= {"VALID", "STATUS_UNAVAILABLE"}, results
                if results == {"VALID"}:
                    break
                assert time.monotonic() < deadline, f"no VALID within 30 s of the failover: {results}"
                time.sleep(0.1)
            assert scan(world.wp1(PERMITS["cancelled"]), "T")["result"] == "PERMIT_CANCELLED"
            promoted = f"127.0.0.1:{redis_cluster.primary_for_slot(slot).port}"
            deadline = time.monotonic() + 30
            while runtime.subscription_node != promoted or not runtime.near_cache.trusted:
                assert time.monotonic() < deadline, (runtime.subscription_node, promoted)
                time.sleep(0.1)
            # challenges land on random slots, a third of them on the promoted node
            statuses = [client.post("/v1/cards/challenge", headers=world.headers("exit_entry")).status_code
                        for _ in range(30)]
            assert statuses == [200] * 30, statuses
        finally:
            client.__exit__(None, None, None)
    finally:
        redis_sync.close()
