"""Request ids: taken from X-Request-Id when plain, made otherwise, returned, logged and audited."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import pytest

from verifier.api.audit.log import AUDIT_STREAM
from tests.api.conftest import PERMITS, World, wait_until

HEX_ID = re.compile(r"[0-9a-f]{32}")


def audit_records(world: World) -> list[dict[str, Any]]:
    return [r for _id, fields in world.redis_sync.xrange(AUDIT_STREAM) for r in orjson.loads(fields[b"r"])]


def test_a_plain_incoming_id_is_returned_and_put_in_the_audit_record(client: Any, world: World) -> None:
    answer = client.post("/v1/verify/qr", json={"qr": world.wp1(PERMITS["valid"]), "terminal": "T-1"},
                         headers={**world.headers("exit_entry"), "X-Request-Id": "desk12-0001:a.b_c"})
    assert answer.status_code == 200 and answer.json()["result"] == "VALID"
    assert answer.headers["x-request-id"] == "desk12-0001:a.b_c"
    records = wait_until(lambda: [r for r in audit_records(world) if r.get("rid") == "desk12-0001:a.b_c"],
                         what="the audit record with the request id")
    assert records[0]["kind"] == "qr" and records[0]["result"] == "VALID"


@pytest.mark.parametrize("incoming", [
    "x" * 65,  # too long
    "has space",  # not in the safe set
    "-starts-with-a-dash",
    "quote\"d",
    "",
])
def test_an_unsafe_or_missing_id_is_replaced_by_a_fresh_one(client: Any, world: World, incoming: str) -> None:
    headers = world.headers("admin")
    if incoming:
        headers["X-Request-Id"] = incoming
    first = client.get(f"/v1/permits/{PERMITS['valid'].pn}", headers=headers)
    second = client.get(f"/v1/permits/{PERMITS['valid'].pn}", headers=headers)
    assert first.status_code == second.status_code == 200
    assert HEX_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_answers_outside_any_route_name_their_request_too(client: Any, world: World) -> None:
    missing = client.get("/no/such/path", headers={"X-Request-Id": "r-404"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "r-404"
    refused = client.post("/v1/verify/qr", json={"qr": "WP1:x", "terminal": "T-1"}, headers={"X-Request-Id": "r-401"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "r-401"
    assert client.get("/health/live").headers["x-request-id"]


def test_the_log_lines_of_a_request_carry_its_id_and_no_path(client: Any, world: World,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    pn = PERMITS["valid"].pn
    with caplog.at_level(logging.DEBUG, logger="verifier.api.requests"):
        client.get(f"/v1/permits/{pn}", headers={**world.headers("admin"), "X-Request-Id": "trace-42"})
    lines = [r for r in caplog.records if r.name == "verifier.api.requests"]
    assert lines, "no request line at DEBUG"
    from verifier.lib.logging import JsonFormatter

    shown = orjson.loads(JsonFormatter().format(lines[-1]))
    assert shown["request_id"] == "trace-42"
    assert shown["route"] == "/v1/permits/{pn}" and shown["status"] == 200
    assert pn not in orjson.dumps(shown).decode()
