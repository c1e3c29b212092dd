"""Schemathesis over the whole HTTP API, from the OpenAPI document the app serves.

In-process (the app over ASGI, its lifespan started once, a real private Redis from
``tests.api.conftest``): every operation with generated requests, valid and invalid
(:data:`EXAMPLES` each), then the stateful run along the document's links (create a
webhook subscription, then read, rotate, resume, replay and delete it; look permits up,
then read them). Checks: never a 5xx, and every answer as the document says (status
code, content type, headers, body schema). A fixed seed and a short budget keep it at
seconds; ``VERIFIER_FUZZ_LONG=1`` runs the long variant (README, Fuzzing):
:data:`LONG_EXAMPLES` per operation and longer stateful scenarios.
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from tests.api.conftest import PERMITS, World, open_client
from verifier.api.app import create_app
from verifier.upstream.server import UpstreamServer
from verifier.upstream.simulator import Upstream

LONG = os.environ.get("VERIFIER_FUZZ_LONG") == "1"
SEED = 20261207
EXAMPLES = 6
LONG_EXAMPLES = 300
STATEFUL_EXAMPLES = 8
LONG_STATEFUL_EXAMPLES = 300

# A request the schema allows may still be refused for what it asks: a 404 for a
# resource that is not there, a 409 or 422 for what cannot be carried out (a webhook
# URL that resolves to a private address, a replay from before the retention).
# A holder's sign-in with a generated code is refused for its verdict (403); signing out
# is tried with a token of its own, gone after the first try (401).
# A 400 for what no schema can say is expected too: an opaque paging cursor the service did
# not issue, a date the calendar does not have.
ACCEPTED = ["2xx", "3xx", "400", "404", "406", "409", "422"]
CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    "operations": [
        {"include-path": "/v1/holder/session",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "401", "403"]}}},
    ],
})


HOLDER_TOKENS: dict[str, str] = {}


def _role(path: str) -> str:
    """The role that may call ``path``, so that generated requests get past the guard."""
    if path.startswith(("/v1/holder", "/v1/webhooks/settings")):
        return "essc_platform"
    if path.startswith(("/v1/admin", "/v1/webhooks")):
        return "admin"
    return "social_insurance"


@pytest.fixture
def upstream_url() -> Any:
    """The upstream simulator (the holder's notice is made there); it knows none of the world's permits."""
    with UpstreamServer(Upstream.create(permits=20, seed=11)) as server:
        yield server.url


@pytest.fixture
def api_schema(world: World, upstream_url: str) -> Any:
    # holder tokens, signed in with real ES1 codes: one for the holder's endpoints, one to sign out
    client = open_client(world.settings())
    try:
        for name, permit in (("holder", PERMITS["valid"]), ("sign-out", PERMITS["ends_today"])):
            answer = client.post("/v1/holder/session", json={"code": world.es1(permit)},
                                 headers=world.headers("essc_platform"))
            assert answer.status_code == 200, answer.text
            HOLDER_TOKENS[name] = answer.json()["token"]
    finally:
        client.__exit__(None, None, None)
    app = create_app(world.settings(upstream_url=upstream_url))
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app, config=CONFIG)
    try:
        yield schema
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan: its runtime stops before the Redis is flushed


def _headers(world: World, case: Any) -> dict[str, str]:
    """The role's key in both of the document's schemes (over whatever was generated for them);
    other generated headers (a holder token) go as generated."""
    token = world.token[_role(case.path)]
    headers = {"Authorization": f"Bearer {token}", "X-API-Key": token}
    if case.path.startswith("/v1/holder/") and case.path != "/v1/holder/match" and not (
            case.path == "/v1/holder/session" and case.method == "POST"):
        headers["X-Holder-Token"] = HOLDER_TOKENS["sign-out" if case.method == "DELETE" else "holder"]
    return headers


# Where a generated subscription points: the loopback (a generated host name would be
# resolved by the service, off this machine; a subscription then exists for the links).
HOOK_URL = "http://127.0.0.1:9/hook"


def _loopback_only(case: Any) -> None:
    """A schema-valid webhook URL of a case becomes :data:`HOOK_URL` (a shorter one, or not
    a string, stays: it is what an invalid case is about)."""
    if (case.method.upper(), case.path) == ("POST", "/v1/webhooks") and isinstance(case.body, dict):
        url = case.body.get("url")
        if isinstance(url, str) and 8 <= len(url) <= 2000:
            case.body["url"] = HOOK_URL


def _check(world: World, case: Any) -> None:
    _loopback_only(case)
    response = case.call(headers=_headers(world, case))
    assert response.status_code < 500 or (response.status_code == 503 and case.path == "/health/ready"), (
        f"{case.method} {case.path}: {response.status_code} {response.text[:500]}")
    case.validate_response(response)


@pytest.mark.integration
def test_every_operation_answers_by_the_schema(world: World, api_schema: Any) -> None:
    examples = LONG_EXAMPLES if LONG else EXAMPLES
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 40  # the whole API, not a part that happened to load
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @hypothesis.seed(SEED)
            @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.explicit,
                                                                       hypothesis.Phase.generate])
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                _check(world, case)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # no invalid request can be made for this operation (no parameters, no body)


@pytest.mark.integration
def test_stateful_links_answer_by_the_schema(world: World, api_schema: Any) -> None:
    base = api_schema.as_state_machine()
    assert api_schema.statistic.transitions.total >= 8, "the document's links are what this test follows"

    answered: list[tuple[str, str, int]] = []

    class Machine(base):  # type: ignore[misc,valid-type]
        def before_call(self, case: Any) -> None:
            _loopback_only(case)
            super().before_call(case)

        def after_call(self, response: Any, case: Any) -> None:
            answered.append((case.method, case.path, response.status_code))
            super().after_call(response, case)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": _headers(world, case)}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            assert response.status_code < 500 or (
                response.status_code == 503 and case.path == "/health/ready"), (
                f"{case.method} {case.path}: {response.status_code} {response.text[:500]}")
            super().validate_response(response, case, additional_checks, **kwargs)

    steps = LONG_STATEFUL_EXAMPLES if LONG else STATEFUL_EXAMPLES
    Machine.run(settings=settings(max_examples=steps, stateful_step_count=6 if LONG else 4, deadline=None,
                                  database=None, derandomize=True, suppress_health_check=list(HealthCheck),
                                  phases=[hypothesis.Phase.generate]))
    # links were followed with what an answer gave: a subscription made, then found by its id
    called = {(m, p) for m, p, _ in answered}
    assert ("POST", "/v1/permits/lookup") in called and ("GET", "/v1/permits/{pn}") in called, sorted(called)
    assert ("POST", "/v1/webhooks", 201) in answered, sorted(set(answered))
    assert any("{sub_id}" in p and status < 300 for _, p, status in answered), sorted(set(answered))
