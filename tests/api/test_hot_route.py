"""The hot route (verifier/api/qr/hot_route.py): the plain case of POST /v1/verify/qr answered
without Litestar's layers, exactly as the full path answers it; anything else passed on.

Each comparison sends the same request twice to one worker: once through the hot route,
once with it switched off (``HotRoute.enabled``: everything goes on to Litestar's handler),
and compares the answers byte for byte but for what the clock decides (``checked_at``,
``lag_s``, the receipt's signature over them, the ``server-timing`` value).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from verifier.api.auth.keys import revoke_api_key
from verifier.api.qr.hot_route import HotRoute
from tests.api.conftest import NOT_IN_INDEX, PERMITS, World, open_client, run_async, wait_until

QR = "/v1/verify/qr"
_CLOCKED = ("checked_at", "lag_s")


@pytest.fixture
def route(client: Any) -> HotRoute:
    route = client.app.state.hot_route
    assert isinstance(route, HotRoute)
    return route


@pytest.fixture
def full_path(route: HotRoute) -> Iterator[Any]:
    """Call ``full_path(send)``: ``send()`` runs with the hot route switched off."""
    def through_full_path(send: Any) -> Any:
        route.enabled = False
        try:
            return send()
        finally:
            route.enabled = True

    yield through_full_path
    route.enabled = True


def _comparable(response: Any) -> tuple[int, list[tuple[str, str]], Any]:
    # (x-request-id: each request its own, from the layer outside both paths; its form is kept)
    headers = [(name, value if name not in ("server-timing", "x-request-id") else
                value.split("=")[0] if name == "server-timing" else f"<{len(value)} chars>")
               for name, value in response.headers.multi_items() if name != "content-length"]
    try:
        body = response.json()
    except ValueError:
        return response.status_code, headers, response.content
    if isinstance(body, dict):
        for name in _CLOCKED:
            body.pop(name, None)
        if "receipt" in body:
            body["receipt"] = sorted(body["receipt"])  # its fields; the signature covers checked_at
    return response.status_code, headers, body


def _post(client: Any, body: bytes, headers: dict[str, str] | list[tuple[str, str]]) -> Any:
    if isinstance(headers, dict):
        headers = {"Content-Type": "application/json", **headers}
    return client.post(QR, content=body, headers=headers)


def _body(qr: str, terminal: str = "T-1", **extra: Any) -> bytes:
    return msgspec.json.encode({"qr": qr, "terminal": terminal, **extra})


def _warm(client: Any, world: World, role: str) -> None:
    """A key's first request goes the full way (it fills this worker's key cache)."""
    assert _post(client, _body("hello"), world.headers(role)).status_code == 200


@pytest.mark.parametrize("role", ["exit_entry", "service_hall", "social_insurance"])
@pytest.mark.parametrize("case", ["valid", "cancelled", "expired", "superseded", "card_lost", "no_card",
                                  "not_in_index", "not_a_code", "es1", "receipt"])
def test_a_plain_scan_is_answered_here_as_the_full_path_answers_it(
        client: Any, world: World, route: HotRoute, full_path: Any, role: str, case: str) -> None:
    _warm(client, world, role)
    if case in ("es1", "expired"):  # single-use codes: one for each path (a WP1 cannot outlive its permit)
        permit = PERMITS["valid" if case == "es1" else case]
        bodies = [_body(world.es1(permit)), _body(world.es1(permit))]
    else:
        text = {"not_in_index": lambda: world.wp1(NOT_IN_INDEX), "not_a_code": lambda: "WP1:NOT A CODE",
                "receipt": lambda: world.wp1(PERMITS["valid"]),
                # made from version 2; the index has version 3
                "superseded": lambda: world.wp1(msgspec.structs.replace(PERMITS["superseded"], v=2)),
                }.get(case, lambda: world.wp1(PERMITS[case]))()
        extra = {"receipt": True} if case == "receipt" else {}
        bodies = [_body(text, **extra)] * 2
    before = route.answered
    hot = _post(client, bodies[0], world.headers(role))
    assert route.answered == before + 1
    full = full_path(lambda: _post(client, bodies[1], world.headers(role)))
    assert route.answered == before + 1
    assert hot.status_code == 200
    assert _comparable(hot) == _comparable(full)
    assert [name for name, _ in hot.headers.multi_items()] == ["content-type", "content-length", "server-timing", "x-request-id"]
    assert int(hot.headers["content-length"]) == len(hot.content)
    if case == "receipt":
        assert set(hot.json()["receipt"]) == set(full.json()["receipt"]) and hot.json()["receipt"]


def test_the_x_api_key_header_is_plain_too(client: Any, world: World, route: HotRoute) -> None:
    _warm(client, world, "exit_entry")
    before = route.answered
    answer = _post(client, _body(world.wp1(PERMITS["valid"])), {"X-API-Key": world.token["exit_entry"]})
    assert answer.json()["result"] == "VALID"
    assert route.answered == before + 1


def _passed_on_cases(world: World) -> dict[str, tuple[bytes, Any]]:
    good = world.wp1(PERMITS["valid"])
    key = world.headers("exit_entry")
    json_key = {"Content-Type": "application/json", **key}
    cases = {
        "no key": (_body(good), {}),
        "a malformed key": (_body(good), {"Authorization": "Bearer nonsense"}),
        "an unknown key": (_body(good), {"Authorization": "Bearer pvk_000000000000_" + "A" * 43}),
        "a role the route does not admit": (_body(good), world.headers("partner")),
        "a body over the route's bound": (_body(good, terminal="T" * 70_000), key),
        "not JSON": (b"{not json", key),
        "no qr": (msgspec.json.encode({"terminal": "T-1"}), key),
        "an unknown field": (_body(good, colour="blue"), key),
        "a wrong type": (_body(good, receipt="yes"), key),
        "a key twice": (b'{"qr": "%s", "qr": "WP1:X", "terminal": "T-1"}' % good.encode(), key),
        "an escape in the text": (b'{"qr": "%s", "terminal": "T\\u002d1"}' % good.encode(), key),
        "a key name as a value": (_body(good, terminal="qr"), key),
        "text/plain": (_body(good), [("Content-Type", "text/plain"), *key.items()]),
        "no content type": (_body(good), list(key.items())),
        "two content types": (_body(good), [("Content-Type", "application/json"),
                                            ("Content-Type", "application/json"), *key.items()]),
        "a content type with another parameter": (_body(good), [("Content-Type", "application/json; q=1"),
                                                                *key.items()]),
        "Expect: 100-continue": (_body(good), [*json_key.items(), ("Expect", "100-continue")]),
    }
    assert sorted(cases) == sorted(PASSED_ON)
    return cases


PASSED_ON = ["no key", "a malformed key", "an unknown key", "a role the route does not admit",
             "a body over the route's bound", "not JSON", "no qr", "an unknown field", "a wrong type", "a key twice",
             "an escape in the text", "a key name as a value", "text/plain", "no content type", "two content types",
             "a content type with another parameter", "Expect: 100-continue"]


@pytest.mark.parametrize("case", PASSED_ON)
def test_anything_but_the_plain_case_goes_on_to_the_full_path(
        client: Any, world: World, route: HotRoute, full_path: Any, case: str) -> None:
    _warm(client, world, "exit_entry")
    body, headers = _passed_on_cases(world)[case]
    before = route.answered
    through = _post(client, body, headers)
    assert route.answered == before, f"{case}: answered by the hot route"
    alone = full_path(lambda: _post(client, body, headers))
    assert _comparable(through) == _comparable(alone), case
    assert through.status_code < 500, through.text


def test_other_methods_and_paths_go_on(client: Any, world: World, route: HotRoute) -> None:
    _warm(client, world, "exit_entry")
    before = route.answered
    assert client.get(QR, headers=world.headers("exit_entry")).status_code == 405
    trailing = client.post(QR + "/", content=_body(world.wp1(PERMITS["valid"])),
                           headers={"Content-Type": "application/json", **world.headers("exit_entry")})
    assert trailing.status_code in (200, 404), trailing.text
    assert route.answered == before


def test_a_keys_first_request_goes_the_full_way_then_the_next_is_answered_here(
        client: Any, world: World, route: HotRoute) -> None:
    key_id, token = world.add_key("service_hall", "hot route newcomer")
    headers = {"Authorization": f"Bearer {token}"}
    before = route.answered
    assert _post(client, _body(world.wp1(PERMITS["valid"])), headers).json()["result"] == "VALID"
    assert route.answered == before
    assert _post(client, _body(world.wp1(PERMITS["valid"])), headers).json()["result"] == "VALID"
    assert route.answered == before + 1
    wrong_secret = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert _post(client, _body(world.wp1(PERMITS["valid"])), {"Authorization": f"Bearer {wrong_secret}"}) \
        .status_code == 401
    assert route.answered == before + 1


def test_a_revoked_key_is_refused_on_its_next_request(client: Any, world: World, route: HotRoute) -> None:
    key_id, token = world.add_key("exit_entry", "hot route revoked")
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(2):
        assert _post(client, _body(world.wp1(PERMITS["valid"])), headers).status_code == 200
    keys = client.app.state.runtime.keys
    assert keys.known(token) is not None
    assert run_async(world.store, lambda r: revoke_api_key(r, key_id))
    wait_until(lambda: keys.known(token) is None, what="the revocation to reach the worker")
    refused = _post(client, _body(world.wp1(PERMITS["valid"])), headers)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"


def test_a_key_over_its_rate_is_refused_by_the_full_path(world: World) -> None:
    client = open_client(world.settings(rate_limit_per_s=0.5, rate_limit_burst=3))
    try:
        route = client.app.state.hot_route
        answers = [_post(client, _body(world.wp1(PERMITS["valid"])), world.headers("exit_entry")) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429], [a.text for a in answers]
        # the first went the full way (the key was new to the worker), the next two were answered
        # here, the refusals came from the full path
        assert route.answered == 2
        for refused in answers[3:]:
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) >= 1
    finally:
        client.__exit__(None, None, None)


def test_with_cors_a_request_from_an_origin_gets_the_cors_headers(world: World) -> None:
    agency = "https://agency.example"
    client = open_client(world.settings(cors_origins=(agency,)))
    try:
        route = client.app.state.hot_route
        _warm(client, world, "exit_entry")
        before = route.answered
        answer = _post(client, _body(world.wp1(PERMITS["valid"])), {**world.headers("exit_entry"), "Origin": agency})
        assert answer.json()["result"] == "VALID"
        assert answer.headers["access-control-allow-origin"] == agency
        assert route.answered == before
        plain = _post(client, _body(world.wp1(PERMITS["valid"])), world.headers("exit_entry"))
        assert plain.json()["result"] == "VALID" and route.answered == before + 1
    finally:
        client.__exit__(None, None, None)


def test_a_bug_under_the_hot_route_is_a_bare_500_as_on_the_full_path(
        client: Any, world: World, route: HotRoute, full_path: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _warm(client, world, "exit_entry")
    verifications = client.app.state.runtime.verifications

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug with a permit number WP1100002020000001 in its message")

    monkeypatch.setattr(verifications, "qr", broken)
    before = route.answered
    hot = _post(client, _body(world.wp1(PERMITS["valid"])), world.headers("exit_entry"))
    assert route.answered == before + 1
    full = full_path(lambda: _post(client, _body(world.wp1(PERMITS["valid"])), world.headers("exit_entry")))
    assert hot.status_code == 500
    assert _comparable(hot) == _comparable(full)
    assert hot.json() == {"type": "/problems/internal-error", "title": "Internal error", "status": 500}
    errors = [r for r in caplog.records if r.name == "verifier.errors"]
    assert len(errors) == 2 and all("verify_qr" in r.getMessage() for r in errors), errors
    assert all("WP1100002020000001" not in r.getMessage() for r in errors)


def test_requests_answered_here_are_counted_and_audited_as_on_the_full_path(
        client: Any, world: World, route: HotRoute) -> None:
    _warm(client, world, "exit_entry")
    runtime = client.app.state.runtime
    pending = len(runtime.audit)
    before = route.answered
    for _ in range(3):
        assert _post(client, _body(world.wp1(PERMITS["valid"]), terminal="HOT-7"),
                     world.headers("exit_entry")).status_code == 200
    assert route.answered == before + 3
    buffered = [r for r in runtime.audit._buffer if r.get("terminal") == "HOT-7"]
    if len(buffered) < 3:  # a flush ran meanwhile: the records are counted as written
        assert len(runtime.audit) + runtime.audit.written >= pending + 3
    else:
        assert all(r["kind"] == "qr" and r["result"] == "VALID" and r["pn"] == PERMITS["valid"].pn
                   and r["key"] == world.key_id["exit_entry"] for r in buffered)
    deadline = time.monotonic() + 10
    while True:
        text = client.get("/metrics").text
        line = next((line for line in text.splitlines() if line.startswith("pv_requests_total{")
                     and 'route="/v1/verify/qr"' in line and 'status="200"' in line), "")
        if line and float(line.rsplit(" ", 1)[1]) >= 4:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert "pv_request_duration_seconds_count{route=\"/v1/verify/qr\"}" in text
