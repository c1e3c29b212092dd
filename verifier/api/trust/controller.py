"""GET /v1/trust-list: public, for offline verifiers."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from verifier.api.openapi import problems
from verifier.api.trust.schemas import TrustListOut
from verifier.lib.problems import Problem


class TrustController(Controller):
    path = "/v1/trust-list"
    tags = ["public"]

    @get("/", responses=problems(503), summary="The trust list in force")
    async def trust_list(self, request: Request[Any, Any, Any]) -> Response[TrustListOut]:
        trust = request.app.state.runtime.trust.current
        if trust is None:
            raise Problem(503, "No trust list has been loaded yet.", headers={"Retry-After": "5"})
        jwks = trust.to_jwks()
        return Response(
            TrustListOut(version=trust.version, keys=jwks["keys"]),
            headers={"ETag": f'"{trust.version}"', "Cache-Control": "public, max-age=60"},
        )
