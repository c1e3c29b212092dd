"""API keys, roles and rate limits: 401, 403, 429, as problem documents."""

from __future__ import annotations

import time
from typing import Any

import pytest

from verifier.api.auth import keys as keys_module
from verifier.api.auth.keys import ApiKeyError, add_api_key, list_api_keys, revoke_api_key
from tests.api.conftest import EMPLOYER_A, PERMITS, World, open_client, run_async

QR = "/v1/verify/qr"


def scan(client: Any, world: World, headers: dict[str, str]) -> Any:
    return client.post(QR, json={"qr": world.wp1(PERMITS["valid"]), "terminal": "T"}, headers=headers)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-key"},
        {"X-API-Key": "pvk_000000000000_" + "A" * 43},  # well-formed, never issued
    ],
    ids=["none", "empty-bearer", "basic", "malformed", "unknown"],
)
def test_missing_or_bad_key_is_401(client: Any, world: World, headers: dict[str, str]) -> None:
    response = scan(client, world, headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_right_id_wrong_secret_is_401(client: Any, world: World) -> None:
    token = world.token["exit_entry"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(scan(client, world, {"Authorization": f"Bearer {forged}"}), 401)


def test_both_header_forms_are_accepted(client: Any, world: World) -> None:
    token = world.token["exit_entry"]
    assert scan(client, world, {"Authorization": f"Bearer {token}"}).status_code == 200
    assert scan(client, world, {"X-API-Key": token}).status_code == 200


def test_wrong_role_is_403(client: Any, world: World) -> None:
    body = assert_problem(scan(client, world, world.headers("partner")), 403)
    assert "partner" in body["detail"]


def test_admin_endpoint_is_for_admins_only(client: Any, world: World) -> None:
    for role in ("exit_entry", "service_hall", "social_insurance", "partner"):
        assert_problem(client.get("/v1/admin/sync", headers=world.headers(role)), 403)
    response = client.get("/v1/admin/sync", headers=world.headers("admin"))
    assert response.status_code == 200
    body = response.json()
    assert (body["ready"], body["cursor"], body["count"]) == (True, world.index.seq, len(PERMITS))
    assert body["lag_s"] >= 0


def test_revoked_key_is_refused(world: World) -> None:
    key_id, token = world.add_key("exit_entry", "soon revoked")
    assert run_async(world.redis_url, lambda r: revoke_api_key(r, key_id)) is True
    assert run_async(world.redis_url, lambda r: revoke_api_key(r, key_id)) is False  # already revoked
    client = open_client(world.settings())
    try:
        assert_problem(scan(client, world, {"X-API-Key": token}), 401)
        assert scan(client, world, world.headers("exit_entry")).status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_a_revocation_reaches_a_worker_that_has_the_key_cached(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Cached records never expire here: only the revocation broadcast can stop the key.
    monkeypatch.setattr(keys_module, "CACHE_TTL_S", 3600.0)
    key_id, token = world.add_key("exit_entry", "revoked while cached")
    client = open_client(world.settings())
    try:
        runtime = client.app.state.runtime
        assert scan(client, world, {"X-API-Key": token}).status_code == 200  # now cached
        deadline = time.monotonic() + 30
        while not runtime.subscribed.is_set():
            assert time.monotonic() < deadline, "the worker never subscribed"
            time.sleep(0.05)
        assert scan(client, world, {"X-API-Key": token}).status_code == 200
        assert run_async(world.redis_url, lambda r: revoke_api_key(r, key_id)) is True
        deadline = time.monotonic() + 30
        while (response := scan(client, world, {"X-API-Key": token})).status_code == 200:
            assert time.monotonic() < deadline, "the revocation never reached the worker"
            time.sleep(0.05)
        assert_problem(response, 401)
        assert scan(client, world, world.headers("exit_entry")).status_code == 200  # the others stay
    finally:
        client.__exit__(None, None, None)


def test_keys_are_stored_hashed_and_listed_without_secrets(world: World) -> None:
    key_id, token = world.add_key("partner", "HR platform", (EMPLOYER_A,))
    secret = token.split("_", 2)[2]  # the secret itself may hold "_"
    assert len(secret) == 43
    for key in world.redis_sync.scan_iter("pv:apikey*"):
        kind = world.redis_sync.type(key)
        values = world.redis_sync.hvals(key) if kind == b"hash" else list(world.redis_sync.smembers(key))
        assert all(secret.encode() not in value for value in values)
    keys = {k.key_id: k for k in run_async(world.redis_url, list_api_keys)}
    listed = keys[key_id]
    assert (listed.role, listed.name, listed.employers, listed.revoked) == ("partner", "HR platform", (EMPLOYER_A,), None)
    assert token.startswith(f"pvk_{key_id}_")
    assert not hasattr(listed, "digest")


@pytest.mark.parametrize(
    ("role", "employers", "message"),
    [
        ("superuser", (), "unknown role"),
        ("partner", (), "at least one employer"),
        ("partner", ("not-a-credit-code",), "18 characters"),
        ("exit_entry", (EMPLOYER_A,), "only partner keys"),
    ],
)
def test_key_creation_refuses_nonsense(world: World, role: str, employers: tuple[str, ...], message: str) -> None:
    with pytest.raises(ApiKeyError, match=message):
        run_async(world.redis_url, lambda r: add_api_key(r, role, "x", employers))


def test_rate_limit_is_429_with_retry_after_and_per_key(world: World) -> None:
    client = open_client(world.settings(rate_limit_per_s=0.5, rate_limit_burst=3))
    try:
        statuses = [scan(client, world, world.headers("exit_entry")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = scan(client, world, world.headers("exit_entry"))
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert scan(client, world, world.headers("service_hall")).status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_rate_limit_is_shared_by_workers(world: World) -> None:
    # Two app instances (two workers' runtimes) draw from one bucket in Redis.
    settings = world.settings(rate_limit_per_s=0.5, rate_limit_burst=4)
    first, second = open_client(settings), open_client(settings)
    try:
        headers = world.headers("social_insurance")
        statuses = [scan(c, world, headers).status_code for c in (first, second, first, second, first, second)]
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)


def test_health_trust_list_and_receipt_keys_need_no_key(client: Any) -> None:
    for path in ("/health/live", "/health/ready", "/v1/trust-list", "/v1/receipt-keys", "/metrics", "/schema/openapi.json"):
        assert client.get(path).status_code == 200, path
