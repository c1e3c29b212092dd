"""/v1/webhooks: subscriptions, their rules (roles, events, SSRF), secrets, replays, dead letters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from verifier.notify.store import StoreKeys

from .conftest import EMPLOYER_A, World, open_client

pytestmark = pytest.mark.integration

HOOK = "http://127.0.0.1:9/hook"


def create(client: TestClient[Any], world: World, role: str = "partner", **body: Any) -> Any:
    return client.post("/v1/webhooks", json={"url": HOOK, "events": ["*"], **body}, headers=world.headers(role))


@pytest.fixture
def platform(world: World) -> dict[str, str]:
    key_id, token = world.add_key("essc_platform", "test e-card platform")
    return {"Authorization": f"Bearer {token}", "key_id": key_id}


def test_a_subscription_shows_its_secret_once(client: TestClient[Any], world: World) -> None:
    made = create(client, world, events=["permit.cancelled", "card.lost"], description="HR system")
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["public_key"].startswith("whpk_") and body["id"].startswith("wh_")
    assert body["events"] == ["permit.cancelled", "card.lost"] and body["status"] == "active"
    shown = client.get(f"/v1/webhooks/{body['id']}", headers=world.headers("partner")).json()
    assert "secret" not in shown and shown["public_key"] == body["public_key"]
    assert (shown["url"], shown["description"], shown["backlog"]) == (HOOK, "HR system", 0)
    listed = client.get("/v1/webhooks", headers=world.headers("partner")).json()["webhooks"]
    assert [w["id"] for w in listed] == [body["id"]]
    # what its messages may carry was fixed from the key: the partner's employers and fields
    stored = world.redis_sync.hgetall(StoreKeys.sub(body["id"]))
    assert stored[b"employers"].decode() == EMPLOYER_A
    assert stored[b"fields"].decode() == "pn,status,cat,emp,vf,vt"


def test_each_key_sees_its_own_subscriptions_and_an_admin_all(client: TestClient[Any], world: World) -> None:
    mine = create(client, world).json()["id"]
    admins = create(client, world, role="admin").json()["id"]
    other_key = world.add_key("partner", "another HR platform", ("91310000200000000B",))[1]
    other = {"Authorization": f"Bearer {other_key}"}
    assert client.get("/v1/webhooks", headers=other).json() == {"webhooks": []}
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/attempts"), ("POST", "/rotate-secret"),
                         ("POST", "/resume")):
        answer = client.request(method, f"/v1/webhooks/{mine}{path}", headers=other)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    every = {w["id"] for w in client.get("/v1/webhooks", headers=world.headers("admin")).json()["webhooks"]}
    assert every == {mine, admins}


@pytest.mark.parametrize("role", ["exit_entry", "service_hall", "social_insurance"])
def test_verifying_roles_cannot_subscribe(client: TestClient[Any], world: World, role: str) -> None:
    assert create(client, world, role=role).status_code == 403


@pytest.mark.parametrize(("events", "says"), [
    (["permit.verified"], "cannot be had by a partner key"),   # the holder's notice, not an employer's
    (["permit.teleported"], "cannot be had"),
    (["*", "permit.cancelled"], "stands alone"),
])
def test_events_a_key_may_not_have_are_refused(client: TestClient[Any], world: World, events: list[str],
                                                says: str) -> None:
    answer = create(client, world, events=events)
    assert answer.status_code == 422 and says in answer.json()["detail"]


@pytest.mark.parametrize("body", [{"url": HOOK, "events": []}, {"url": HOOK}, {"url": HOOK, "events": ["NOT A TYPE"]},
                                  {"url": 7, "events": ["*"]}, {"url": HOOK, "events": ["*"], "extra": 1}])
def test_malformed_subscriptions_are_400(client: TestClient[Any], world: World, body: dict[str, Any]) -> None:
    answer = client.post("/v1/webhooks", json=body, headers=world.headers("partner"))
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("url", "says"), [
    ("https://10.1.2.3/hook", "private"),
    ("https://192.168.1.10/hook", "private"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://[::ffff:10.0.0.1]/hook", "private"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://100.64.0.1/hook", "not a public address"),
    ("http://8.8.8.8/hook", "http:// is allowed only to loopback"),
    ("ftp://127.0.0.1/hook", "must be https"),
    ("https://user:pw@127.0.0.1/hook", "user name"),
    ("https://127.0.0.1/hook#frag", "fragment"),
])
def test_urls_that_reach_inside_are_refused(client: TestClient[Any], world: World, url: str, says: str) -> None:
    answer = create(client, world, url=url)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["detail"]


def test_loopback_and_allow_listed_networks(world: World) -> None:
    strict = open_client(world.settings(webhook_allow_loopback=False, webhook_allow_networks="10.20.0.0/16"))
    try:
        refused = create(strict, world)
        assert refused.status_code == 422 and "loopback" in refused.json()["detail"]
        assert create(strict, world, url="https://10.20.30.40:8443/hook").status_code == 201
        assert create(strict, world, url="https://10.21.0.1/hook").status_code == 422
    finally:
        strict.__exit__(None, None, None)


def test_localhost_by_name_is_loopback(client: TestClient[Any], world: World) -> None:
    assert create(client, world, url="http://localhost:8099/hook").status_code == 201


def test_rotating_the_secret_keeps_the_old_one_for_a_day(client: TestClient[Any], world: World) -> None:
    made = create(client, world).json()
    rotated = client.post(f"/v1/webhooks/{made['id']}/rotate-secret", headers=world.headers("partner"))
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != made["secret"]
    stored = world.redis_sync.hgetall(StoreKeys.sub(made["id"]))
    assert stored[b"previous_secret"].decode() == made["secret"]
    until = int(stored[b"previous_secret_until_ms"]) / 1000
    assert 23.9 * 3600 < until - time.time() <= 24 * 3600
    assert body["previous_secret_valid_until"].endswith("Z")


def test_deleting_a_subscription(client: TestClient[Any], world: World) -> None:
    made = create(client, world).json()
    assert client.delete(f"/v1/webhooks/{made['id']}", headers=world.headers("partner")).status_code == 204
    assert client.get(f"/v1/webhooks/{made['id']}", headers=world.headers("partner")).status_code == 404
    assert client.delete(f"/v1/webhooks/{made['id']}", headers=world.headers("partner")).status_code == 404


def test_attempts_of_a_new_subscription(client: TestClient[Any], world: World) -> None:
    made = create(client, world).json()
    answer = client.get(f"/v1/webhooks/{made['id']}/attempts", headers=world.headers("partner"))
    assert answer.status_code == 200
    assert answer.json() == {"id": made["id"], "status": "active", "paused_reason": None, "failing_since": None,
                             "last_error": None, "attempts": []}
    assert client.get(f"/v1/webhooks/{made['id']}/attempts?limit=0", headers=world.headers("partner")).status_code == 400


def test_a_replay_is_queued_and_can_be_followed(client: TestClient[Any], world: World) -> None:
    made = create(client, world).json()
    headers = world.headers("partner")
    answer = client.post(f"/v1/webhooks/{made['id']}/replay", json={"since_seq": 10}, headers=headers)
    assert answer.status_code == 202
    body = answer.json()
    assert body["state"] == "queued" and body["replay_id"].startswith("rp_")
    status = client.get(body["status_url"], headers=headers)
    assert status.status_code == 200 and status.json()["state"] == "queued"
    by_time = client.post(f"/v1/webhooks/{made['id']}/replay", json={"since": "2026-11-01T00:00:00+08:00"},
                          headers=headers)
    assert by_time.status_code == 202
    for wrong, status in (({}, 422), ({"since_seq": 1, "since": "2026-11-01T00:00:00Z"}, 422),
                          ({"since": "yesterday"}, 422), ({"since": "2026-11-01T00:00:00"}, 422),
                          ({"since_seq": -1}, 400), ({"since_seq": 1.5}, 400), ({"since_seq": "5"}, 400)):
        refused = client.post(f"/v1/webhooks/{made['id']}/replay", json=wrong, headers=headers)
        assert refused.status_code == status, wrong
        assert refused.headers["content-type"] == "application/problem+json"
    assert client.post(f"/v1/webhooks/{made['id']}/replay", json={"since_seq": 7.0}, headers=headers).status_code == 202
    assert client.get(f"/v1/webhooks/{made['id']}/replays/rp_000000000000", headers=headers).status_code == 404


def test_the_platform_turns_verified_notices_on(client: TestClient[Any], world: World, platform: dict[str, str]) -> None:
    headers = {"Authorization": platform["Authorization"]}
    assert client.get("/v1/webhooks/settings", headers=headers).json() == {"verified_notices": False}
    answer = client.put("/v1/webhooks/settings", json={"verified_notices": True}, headers=headers)
    assert answer.status_code == 200
    assert client.get("/v1/webhooks/settings", headers=headers).json() == {"verified_notices": True}
    assert client.get("/v1/webhooks/settings", headers=world.headers("partner")).status_code == 403
    made = client.post("/v1/webhooks", json={"url": HOOK, "events": ["permit.verified", "permit.expiring"]},
                       headers=headers)
    assert made.status_code == 201
    assert client.put("/v1/webhooks/settings", json={"verified_notices": "yes"}, headers=headers).status_code == 400


def test_dead_letters_are_the_admins(client: TestClient[Any], world: World) -> None:
    assert client.get("/v1/admin/webhooks/dead-letters", headers=world.headers("partner")).status_code == 403
    assert client.get("/v1/admin/webhooks/dead-letters", headers=world.headers("admin")).json() == {"dead_letters": []}
    resend = client.post("/v1/admin/webhooks/dead-letters/resend", json={"ids": ["1-0", "nonsense"]},
                         headers=world.headers("admin"))
    assert resend.status_code == 200 and resend.json() == {"resent": [], "refused": [], "missing": ["1-0", "nonsense"]}
    nothing = client.post("/v1/admin/webhooks/dead-letters/resend", json={}, headers=world.headers("admin"))
    assert nothing.status_code == 200 and nothing.json() == {"resent": [], "refused": [], "missing": []}


def test_a_key_holds_at_most_twenty_subscriptions(client: TestClient[Any], world: World) -> None:
    for _ in range(20):
        assert create(client, world).status_code == 201
    answer = create(client, world)
    assert answer.status_code == 409 and "at most 20" in answer.json()["detail"]


@pytest.fixture
def unreachable_store(world: World) -> Iterator[TestClient[Any]]:
    from verifier.api.app import create_app
    from verifier.lib.redis_server import free_port

    # (not open_client: it waits for the store's revocation subscription, which cannot come)
    client = TestClient(create_app(world.settings(store_url=f"redis://127.0.0.1:{free_port()}/0")))
    client.__enter__()
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


def test_an_unreachable_store_is_503(unreachable_store: TestClient[Any], world: World) -> None:
    answer = create(unreachable_store, world)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert unreachable_store.get("/v1/webhooks", headers=world.headers("partner")).status_code == 503
