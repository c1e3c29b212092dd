"""The whole service over real HTTP, as `verifier demo` runs it: upstream simulator -> sync job -> Redis -> API.

A cancellation made in the simulator flips the verdict of every API worker; a key
revoked in the simulator's trust list turns its codes into KEY_REVOKED.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from verifier.run.demo import DemoOptions, DemoStack, create_demo_keys
from tests.api.conftest import wait_until

pytestmark = pytest.mark.slow

PERMITS = 300
SEED = 7
_CST = dt.timezone(dt.timedelta(hours=8))
# No keep-alive: every request may land on either API worker.
_http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[DemoStack]:
    options = DemoOptions(state_dir=tmp_path / "demo", port=0, workers=2, permits=PERMITS, seed=SEED,
                          event_rate=0.0, rate_limit_per_s=100_000.0, redis_url=redis_url)
    with DemoStack(options) as running:
        yield running


def active_permit_numbers(count: int) -> list[str]:
    from verifier.upstream.simulator import Upstream

    twin = Upstream.create(permits=PERMITS, seed=SEED)  # the simulator's population, rebuilt from its seed
    today = dt.datetime.now(_CST).date().isoformat()
    found = [r.pn for r in map(twin.record_at, range(PERMITS)) if r.status == "active" and r.vf <= today < r.vt]
    assert len(found) >= count
    return found[:count]


def test_simulator_changes_reach_every_worker(stack: DemoStack) -> None:
    token = create_demo_keys(stack.store_url, ["91110000100000000A"])["exit_entry"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    first, second = active_permit_numbers(2)

    def mint(pn: str) -> str:
        response = _http.post(f"{stack.upstream_url}/issue/wp1", json={"pn": pn})
        assert response.status_code == 200, response.text
        return response.json()["qr"]  # type: ignore[no-any-return]

    def results(text: str, n: int = 10) -> set[str]:
        answers = [_http.post(f"{stack.api_url}/v1/verify/qr", json={"qr": text, "terminal": "E2E"}, headers=headers)
                   for _ in range(n)]
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        return {a.json()["result"] for a in answers}

    code = mint(first)
    assert results(code) == {"VALID"}  # and now in both workers' near-caches

    cancelled_at = time.monotonic()
    event = _http.post(f"{stack.upstream_url}/admin/events", json={"type": "cancel", "pn": first})
    assert event.status_code == 201, event.text
    wait_until(lambda: results(code, 6) == {"PERMIT_CANCELLED"}, timeout_s=10,
               what="the cancellation to reach every worker")
    flipped_after = time.monotonic() - cancelled_at
    print(f"\ncancellation in the simulator -> every worker's verdict flipped in {flipped_after:.2f} s")
    assert results(code, 20) == {"PERMIT_CANCELLED"}

    # A revoked issuer key: the sync job carries the new trust list to Redis, the workers take it.
    other = mint(second)
    assert results(other) == {"VALID"}
    kid = _http.get(f"{stack.api_url}/v1/trust-list").json()["keys"][0]["kid"]
    assert _http.post(f"{stack.upstream_url}/admin/keys/{kid}/revoke").status_code == 200
    wait_until(lambda: results(other, 6) == {"KEY_REVOKED"}, timeout_s=20, what="the revoked key")
    statuses = {k["kid"]: k["status"] for k in _http.get(f"{stack.api_url}/v1/trust-list").json()["keys"]}
    assert statuses[kid] == "revoked"


def test_demo_samples_answer_as_announced(stack: DemoStack) -> None:
    keys: dict[str, Any] = create_demo_keys(stack.store_url, ["91110000100000000A"])
    ready = _http.get(f"{stack.api_url}/health/ready").json()
    assert ready["ready"] is True
    def sync_state() -> dict[str, Any]:
        answer = _http.get(f"{stack.api_url}/v1/admin/sync", headers={"X-API-Key": keys["admin"]["token"]})
        return answer.json()  # type: ignore[no-any-return]

    # The sync job writes its status after its first feed page, which may follow the
    # full load by a poll interval: wait for it rather than race it.
    wait_until(lambda: sync_state()["lag_events"] is not None, timeout_s=10, what="the sync job's first status")
    admin = sync_state()
    assert admin["ready"] is True and admin["count"] == PERMITS
    assert (admin["last_error"], admin["lag_events"]) == (None, 0)
    assert admin["sync"]["role"] == "leader"
