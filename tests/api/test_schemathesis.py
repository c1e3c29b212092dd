"""Schemathesis against the served OpenAPI schema: no 5xx on any input, responses as the schema says.

Runs against `verifier serve` (one worker) over real HTTP, with a bounded number of
examples per operation so that the whole run stays under a minute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.api.conftest import World
from tests.api.servers import Server

MAX_EXAMPLES = 20


@pytest.fixture
def served(world: World, servers: Callable[..., Server]) -> tuple[World, Server]:
    return world, servers(1)


# A schema-valid request may still be refused for what it asks (422: a webhook URL that
# resolves to a private address, an event type the key's role may not have).
CONFIG = schemathesis.Config.from_dict({"checks": {"positive_data_acceptance": {
    "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]}}})


@pytest.fixture
def api_schema(served: tuple[World, Server]) -> Any:
    _world, server = served
    return schemathesis.openapi.from_url(server.url + "/schema/openapi.json", config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_answers_by_its_schema(case: Any, served: tuple[World, Server]) -> None:
    world, server = served
    # the role that may use the operation, so that generated data gets past the guard
    role = ("admin" if case.path.startswith(("/v1/admin", "/v1/webhooks"))
            else "essc_platform" if case.path.startswith("/v1/holder") else "social_insurance")
    response = case.call(base_url=server.url, headers=world.headers(role))
    assert response.status_code < 500 or (response.status_code == 503 and case.path == "/health/ready"), (
        f"{case.method} {case.path}: {response.status_code} {response.text[:500]}")
    case.validate_response(response)
