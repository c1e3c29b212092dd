"""GET /v1/audit-keys: public, so that an auditor can check the audit's signed checkpoints.

The keys come from the store of record (each host publishes its own there); an
auditor keeps a copy apart from the store and checks with it
(``verifier audit verify --keys``).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from verifier.api.audit.schemas import AuditKeysOut
from verifier.api.audit.stream import read_keys
from verifier.api.openapi import problems
from verifier.lib.problems import Problem
from verifier.lib.redis_errors import REDIS_UNAVAILABLE


class AuditKeysController(Controller):
    path = "/v1/audit-keys"
    tags = ["public"]

    @get("/", responses=problems(503), summary="Public keys of the audit's signed checkpoints")
    async def audit_keys(self, request: Request[Any, Any, Any]) -> AuditKeysOut:
        try:
            jwks = await read_keys(request.app.state.runtime.store)
        except REDIS_UNAVAILABLE:
            raise Problem(503, "The store of record cannot be reached; retry shortly.",
                          headers={"Retry-After": "1"}) from None
        return AuditKeysOut(keys=jwks["keys"])
