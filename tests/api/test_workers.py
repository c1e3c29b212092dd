"""Over real HTTP: `verifier serve` (uvicorn, 2 worker processes) and a second server on the same Redis.

Replay protection and cancellations must hold across processes, not just within one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgspec

from tests.api.conftest import PERMITS, World, wait_until
from tests.api.servers import Server


# No keep-alive: a fresh connection each time, so the kernel may hand it to either worker.
_http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)


def scan(base_url: str, world: World, text: str, terminal: str, role: str = "exit_entry") -> dict[str, Any]:
    response = _http.post(base_url + "/v1/verify/qr", json={"qr": text, "terminal": terminal},
                          headers=world.headers(role))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_replay_across_processes(world: World, servers: Callable[..., Server]) -> None:
    one, other = servers(2), servers(1)
    text = world.es1(PERMITS["valid"])
    assert scan(one.url, world, text, "GATE-1")["result"] == "VALID"
    again = scan(other.url, world, text, "GATE-1")  # the scanner's double read, answered by another process
    assert (again["result"], again.get("repeat")) == ("VALID", True)
    assert scan(other.url, world, text, "GATE-2")["result"] == "REPLAYED"
    assert scan(one.url, world, text, "GATE-3")["result"] == "REPLAYED"


def test_concurrent_scans_of_one_code_accept_it_once(world: World, servers: Callable[..., Server]) -> None:
    server = servers(2)
    text = world.es1(PERMITS["valid"])
    with ThreadPoolExecutor(max_workers=16) as pool:
        verdicts = list(pool.map(lambda i: scan(server.url, world, text, f"GATE-{i}"), range(32)))
    results = sorted(v["result"] for v in verdicts)
    assert results.count("VALID") == 1
    assert results.count("REPLAYED") == 31


def test_a_cancellation_reaches_both_workers(world: World, servers: Callable[..., Server]) -> None:
    server = servers(2)
    permit = PERMITS["valid"]
    text = world.wp1(permit)
    for i in range(20):  # warm both workers' near-caches
        assert scan(server.url, world, text, f"G{i}")["result"] == "VALID"
    world.index.change(msgspec.structs.replace(permit, status="cancelled", v=permit.v + 1), "cancel")
    # the workers keep near-cache entries 60 s; pub/sub must drop them well before
    wait_until(lambda: all(scan(server.url, world, text, f"G{i}")["result"] == "PERMIT_CANCELLED" for i in range(20)),
               timeout_s=4, what="every worker to see the cancellation")
    time.sleep(0.2)
    assert {scan(server.url, world, text, f"H{i}")["result"] for i in range(20)} == {"PERMIT_CANCELLED"}
