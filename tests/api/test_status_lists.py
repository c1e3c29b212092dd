"""GET /v1/status-lists/{name} and the trust list with the list signers (WIRE-FORMAT 8), against
a real Redis and a real writer: bytes, ETag, Cache-Control, 304, bad names, not yet published,
expired, Redis away; and the status claim changes nothing online."""

from __future__ import annotations

from pathlib import Path

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

import fastpath
from verifier.index.status_lists import CARDS, MEDIA_TYPE, PERMITS, PublishedList, StatusListKeys
from verifier.issuing import IssuerKey
from verifier.issuing.keys import KeyRing
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis
from verifier.status_lists import keys as signing_keys
from verifier.status_lists.token import etag_of, status_list_token

from tests.api.conftest import PERMITS as INDEX, World, make_world, open_client, wait_until
from tests.status_lists.conftest import writer_thread
from tests.status_lists.decoder import read_token

BASE = "https://pv.example/v1/status-lists"
URL = "/v1/status-lists"
KEYS = StatusListKeys()


def with_entries(world: World) -> None:
    """Give two permits of the index their entries, as a feed event from the upstream would."""
    world.index.change(msgspec.structs.replace(INDEX["valid"], si=0, ci=0, v=INDEX["valid"].v + 1))
    world.index.change(msgspec.structs.replace(INDEX["cancelled"], si=1, ci=1, v=INDEX["cancelled"].v + 1))


@contextlib.contextmanager
def running_writer(world: World) -> Iterator[Any]:
    settings = world.settings(status_list_base_url=BASE, status_list_ttl_s=5, status_list_lifetime_s=60)
    with writer_thread(settings) as writer:
        wait_until(lambda: writer.counts.published >= 2, timeout_s=30, what="both lists published")
        yield writer


def test_a_list_is_served_with_its_cache_headers_and_304(client: Any, world: World) -> None:
    with_entries(world)
    with running_writer(world):
        response = client.get(f"{URL}/{PERMITS}")  # no API key
        assert response.status_code == 200
        assert response.headers["content-type"] == MEDIA_TYPE
        etag = response.headers["etag"]
        assert etag.startswith('"') and etag == etag_of(response.content)
        cache = response.headers["cache-control"]
        assert cache.startswith("public, max-age=") and 0 < int(cache.split("=")[1]) <= 5
        read = read_token(response.content)
        assert read.claims[2] == f"{BASE}/permits" and read.entries(2) == [0, 1]
        # verified by fastpath with the trust list the API serves: the signers are in it, use "status"
        trust_doc = wait_until(lambda: (t := client.get("/v1/trust-list").json()) and any(
            k["use"] == "status" for k in t["keys"]) and t, timeout_s=10, what="the signers in the trust list")
        trust = fastpath.TrustList.from_jwks(msgspec.json.encode({"keys": trust_doc["keys"]}))
        assert fastpath.verify_status_list(response.content, trust).get(1) == 1
        for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            again = client.get(f"{URL}/{PERMITS}", headers={"If-None-Match": header})
            assert again.status_code == 304 and again.content == b"", header
            assert again.headers["etag"] == etag
        other = client.get(f"{URL}/{PERMITS}", headers={"If-None-Match": '"0000000000000000"'})
        assert other.status_code == 200 and other.content == response.content
        cards = client.get(f"{URL}/{CARDS}")
        assert cards.status_code == 200 and read_token(cards.content).bits == 1


@pytest.mark.parametrize("name", ["PERMITS", "permits.cwt", "holders", "..", "permits%2F..", "%00", "x" * 300])
def test_an_unknown_list_is_a_404_problem(client: Any, name: str) -> None:
    response = client.get(f"{URL}/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_list_not_published_yet_is_a_503(client: Any) -> None:
    response = client.get(f"{URL}/{PERMITS}")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["status"] == 503


def test_an_expired_list_is_not_served(client: Any, world: World) -> None:
    key = IssuerKey.generate([BASE])
    now = int(time.time())
    token = status_list_token(key, sub=f"{BASE}/cards", bits=1, bit_array=b"\x00", iat=now - 120, exp=now - 60,
                              ttl=30)
    held = PublishedList(token=token, etag=etag_of(token), iat=now - 120, exp=now - 60, ttl=30)
    world.redis_sync.hset(KEYS.list(CARDS), mapping={f: getattr(held, f) for f in held.__struct_fields__})
    assert client.get(f"{URL}/{CARDS}").status_code == 503


def test_redis_away_is_a_503(own_redis_server: EmbeddedRedis, issuer: IssuerKey, tmp_path: Path) -> None:
    redis_sync = sync_client(own_redis_server.url)
    try:
        world = make_world(own_redis_server.url, redis_sync, issuer, tmp_path / "state")
        client = open_client(world.settings())
        try:
            own_redis_server.stop()
            response = client.get(f"{URL}/{PERMITS}")
            assert response.status_code == 503 and response.headers["retry-after"]
        finally:
            client.__exit__(None, None, None)
    finally:
        redis_sync.close()


def test_the_status_claim_changes_nothing_online(client: Any, world: World) -> None:
    # codes with and without the claim verify as today; a status key signs no permit
    scan = lambda text: client.post("/v1/verify/qr", json={"qr": text, "terminal": "T"},  # noqa: E731
                                    headers=world.headers("exit_entry")).json()
    assert scan(world.wp1(INDEX["valid"]))["result"] == "VALID"
    assert scan(world.wp1(INDEX["valid"], status=(f"{BASE}/permits", 0)))["result"] == "VALID"
    assert scan(world.wp1(INDEX["cancelled"], status=(f"{BASE}/permits", 1)))["result"] == "PERMIT_CANCELLED"
    signer = IssuerKey.generate(["CN-110000"])
    world.redis_sync.set(KEYS.jwks, signing_keys.public_jwks(KeyRing([signer])))
    world.redis_sync.publish("pv:trust:changed", "status-keys")
    wait_until(lambda: client.app.state.runtime.trust.current.status_keys, timeout_s=10, what="the signer loaded")
    verdict = scan(world.wp1(INDEX["valid"], key=signer))
    assert (verdict["result"], verdict["reasons"]) == ("UNKNOWN_KEY", ["key.use"])
