"""With REDIS_URL naming a Redis Cluster: a primary killed -> no 5xx, STATUS_UNAVAILABLE at worst, VALID after failover."""

from __future__ import annotations

import time
from typing import Any

import pytest

from verifier.issuing import IssuerKey
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import LocalCluster
from tests.api.conftest import PERMITS, make_world, open_client

pytestmark = pytest.mark.slow


def test_primary_killed_then_failover(redis_cluster: LocalCluster, redis_cluster_url: str, issuer: IssuerKey) -> None:
    redis_sync = sync_client(redis_cluster_url)
    try:
        world = make_world(redis_cluster_url, redis_sync, issuer)
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
            redis_cluster.kill_primary("{pv}:current")  # the index's slot
            seen: list[str] = []
            deadline = time.monotonic() + 60
            recovered = False
            while time.monotonic() < deadline:
                results = {scan(static, "T")["result"], scan(world.es1(PERMITS["valid"]), "T")["result"]}
                seen.extend(results)
                assert results <= {"VALID", "STATUS_UNAVAILABLE"}, results
                if "STATUS_UNAVAILABLE" in seen and results == {"VALID"}:
                    recovered = True
                    break
                time.sleep(0.1)
            assert "STATUS_UNAVAILABLE" in seen  # the outage was noticed, not papered over
            assert recovered, f"no VALID after failover within 60 s: {seen[-10:]}"
            # after failover the status checks answer again, from the promoted replica
            assert scan(world.wp1(PERMITS["cancelled"]), "T")["result"] == "PERMIT_CANCELLED"
            assert client.post("/v1/cards/challenge", headers=world.headers("exit_entry")).status_code == 200
        finally:
            client.__exit__(None, None, None)
    finally:
        redis_sync.close()
