"""The sync job mirrors an SM2 issuer's trust list (WIRE-FORMAT 9), through rotations
between algorithms, from the simulator over real HTTP into a real Redis."""

from __future__ import annotations

import json

import fastpath
from verifier.index.trust_store import TRUST_KEY

from tests.upstream.support import simulator

from .support import settings_for, sync_thread, wait_caught_up, wait_for


def test_an_sm2_trust_list_is_mirrored_through_rotations(redis_url, redis_sync) -> None:
    with simulator(permits=500, seed=23, issuer_alg="SM2-SM3") as (upstream, server, client):
        with sync_thread(settings_for(redis_url, server.url), trust_list_interval_s=0.1):
            wait_caught_up(upstream, redis_sync)
            stored = wait_for(lambda: redis_sync.get(TRUST_KEY), 10, "the trust list to be stored")
            [key] = json.loads(stored)["keys"]
            assert (key["kty"], key["crv"]) == ("EC", "SM2")
            fastpath.TrustList.from_jwks(stored)

            assert client.post("/admin/keys/rotate", params={"alg": "EdDSA"}).status_code == 200
            rotated = client.get("/trust-list").content
            wait_for(lambda: redis_sync.get(TRUST_KEY) == rotated, 10, "the rotated list to be stored")
            trust = fastpath.TrustList.from_jwks(rotated)
            assert sorted((k.alg, k.status) for k in trust.keys.values()) == [(-65537, "retired"), (-8, "active")]

            assert client.post("/admin/keys/rotate", params={"alg": "ES256"}).status_code == 400
