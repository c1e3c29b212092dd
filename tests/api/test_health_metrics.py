"""/health/live, /health/ready, /metrics (totals of every worker), /v1/trust-list, /schema."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import PERMITS, World, open_client, wait_until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_live_and_ready(client: Any, world: World) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["checks"] == {"redis": True, "index": "fresh", "trust_list": True, "store": True}
    assert body["index_as_of"]["seq"] == world.index.seq


def test_metrics_add_up_the_workers(world: World) -> None:
    first, second = open_client(world.settings()), open_client(world.settings())
    try:
        text = world.wp1(PERMITS["valid"])
        for client, count in ((first, 3), (second, 2)):
            for _ in range(count):
                client.post("/v1/verify/qr", json={"qr": text, "terminal": "T"}, headers=world.headers("exit_entry"))
        client_error = second.post("/v1/verify/qr", json={"qr": 1}, headers=world.headers("exit_entry"))
        assert client_error.status_code == 400

        def scraped() -> dict[Any, float]:
            return samples(first.get("/metrics").text)

        wanted = ("pv_verdicts_total", (("profile", "WP1"), ("result", "VALID")))
        metrics = wait_until(lambda: (m := scraped()).get(wanted) == 5 and m, timeout_s=3,
                             what="both workers' counts in one scrape")
        route = (("method", "POST"), ("route", "/v1/verify/qr"), ("status", "200"))
        assert metrics[("pv_requests_total", route)] == 5
        assert metrics[("pv_requests_total", (("method", "POST"), ("route", "/v1/verify/qr"), ("status", "400")))] == 1
        assert metrics[("pv_request_duration_seconds_count", (("route", "/v1/verify/qr"),))] >= 6
        assert metrics[("pv_signature_cache_total", (("outcome", "hit"),))] >= 3
        assert metrics[("pv_index_ready", ())] == 1
        assert 0 <= metrics[("pv_index_lag_seconds", ())] < 60
        assert metrics[("pv_index_seq", ())] == world.index.seq
        assert metrics[("pv_metrics_store_up", ())] == 1
        # no raw paths as labels: a permit number never becomes a label value
        first.get(f"/v1/permits/{PERMITS['valid'].pn}", headers=world.headers("admin"))
        assert PERMITS["valid"].pn not in first.get("/metrics").text
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)


def test_trust_list_is_the_jwk_set_in_force(client: Any, world: World) -> None:
    response = client.get("/v1/trust-list")
    body = response.json()
    assert len(body["version"]) == 16
    assert {k["kid"] for k in body["keys"]} == {world.issuer.kid_text, world.revoked.kid_text}
    assert {k["status"] for k in body["keys"]} == {"active", "revoked"}
    assert all("d" not in k for k in body["keys"])  # public keys only


def test_openapi_schema_documents_every_endpoint(client: Any) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/v1/verify/qr", "/v1/verify/qr/batch", "/v1/cards/challenge", "/v1/verify/card", "/v1/verify/manual",
        "/v1/permits/{pn}", "/v1/permits/lookup", "/v1/trust-list", "/v1/receipt-keys", "/v1/admin/sync",
        "/health/live", "/health/ready", "/metrics",
    }
    verify = schema["paths"]["/v1/verify/qr"]["post"]
    assert set(verify["responses"]) >= {"200", "400", "401", "403", "413", "429"}
    assert "application/problem+json" in verify["responses"]["401"]["content"]
