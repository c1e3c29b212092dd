"""Bad requests get 4xx problem documents with field detail; internal errors a bare 500."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from litestar.testing import TestClient

from verifier.api.app import create_app
from tests.api.conftest import PERMITS, World, wait_until

QR = "/v1/verify/qr"


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"qr": 5, "terminal": "T"}, "qr"),                       # wrong type
        ({"terminal": "T"}, "qr"),                                # missing field
        ({"qr": "WP1:X", "terminal": "T", "extra": 1}, "extra"),  # unknown field
        ({"qr": "WP1:X", "terminal": "T with spaces"}, "terminal"),
        ({"qr": "WP1:X", "terminal": ""}, "terminal"),
        ({"qr": "WP1:X", "terminal": "T", "receipt": "yes"}, "receipt"),
        ({"qr": "W" * 8193, "terminal": "T"}, "qr"),               # longer than any QR code
    ],
)
def test_schema_violations_name_the_field(client: Any, world: World, body: Any, key: str) -> None:
    document = problem(client.post(QR, json=body, headers=world.headers("exit_entry")), 400)
    assert document["errors"], document
    assert document["errors"][0]["key"] == key
    assert document["errors"][0]["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[]", b"null", b'"a string"', b'{"qr": "WP1:X", "terminal": "T"', b"\xff\xfe"],
    ids=["broken", "empty", "array", "null", "string", "truncated", "not-utf8"],
)
def test_bodies_that_are_not_the_json_object_asked_for(client: Any, world: World, raw: bytes) -> None:
    headers = {**world.headers("exit_entry"), "Content-Type": "application/json"}
    problem(client.post(QR, content=raw, headers=headers), 400)


def test_oversized_bodies_are_413(client: Any, world: World) -> None:
    headers = world.headers("exit_entry")
    problem(client.post(QR, json={"qr": "W" * 70_000, "terminal": "T"}, headers=headers), 413)
    # the batch endpoint takes more, but not without bound
    problem(client.post("/v1/verify/qr/batch", json={"codes": ["W" * 8000] * 1100, "terminal": "T"},
                        headers=headers), 413)
    problem(client.post("/v1/permits/lookup", json={"by": "pn", "ids": ["X" * 60] * 20_000},
                        headers=world.headers("admin")), 413)


def test_lookup_by_something_else_is_400(client: Any, world: World) -> None:
    document = problem(client.post("/v1/permits/lookup", json={"by": "name", "ids": ["X"]},
                                   headers=world.headers("admin")), 400)
    assert document["errors"][0]["key"] == "by"
    problem(client.post("/v1/permits/lookup", json={"by": "pn", "ids": []}, headers=world.headers("admin")), 400)


def test_unknown_paths_and_methods(client: Any, world: World) -> None:
    problem(client.get("/v1/nothing-here"), 404)
    problem(client.get(QR, headers=world.headers("exit_entry")), 405)
    problem(client.get("/v1/permits/" + "X" * 65, headers=world.headers("exit_entry")), 400)


@pytest.mark.parametrize(
    "text",
    ["", "WP1:", "ES1:\x00\x00", "WP1:" + "\u00e9" * 3000, "\ud7ff" * 10, "WP1:" + "0" * 6201, "ES1:" + "A" * 6000],
    ids=["empty", "prefix-only", "nul", "non-ascii", "odd-unicode", "too-long", "garbage"],
)
def test_odd_codes_are_verdicts_not_errors(client: Any, world: World, text: str) -> None:
    response = client.post(QR, json={"qr": text, "terminal": "T"}, headers=world.headers("exit_entry"))
    assert response.status_code == 200, response.text
    assert response.json()["result"] in ("MALFORMED", "UNSUPPORTED")


def test_an_internal_error_is_a_bare_500_and_is_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        async def qr(self, *args: Any) -> Any:
            raise RuntimeError("secret internal detail")

    with TestClient(create_app(world.settings()), raise_server_exceptions=False) as client:
        runtime = client.app.state.runtime
        wait_until(lambda: runtime.subscribed.is_set())
        runtime.verifications = Broken()
        with caplog.at_level(logging.ERROR, logger="verifier.errors"):
            response = client.post(QR, json={"qr": world.wp1(PERMITS["valid"]), "terminal": "T"},
                                   headers=world.headers("exit_entry"))
    body = problem(response, 500)
    assert body == {"type": "/problems/internal-error", "title": "Internal error", "status": 500}
    assert "secret internal detail" not in response.text
    # Logged with where it happened (the frames), not what it said: a message may quote personal data.
    logged = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
    assert logged and "RuntimeError" in logged[0] and 'in qr' in logged[0], logged
    assert "secret internal detail" not in caplog.text
