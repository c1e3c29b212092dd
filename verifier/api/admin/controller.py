"""GET /v1/admin/sync and the terminal registry, /v1/admin/terminals (admin keys only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post

from verifier.api.admin.schemas import SyncOut, TerminalRequest, TerminalsOut
from verifier.api.admin.service import sync_overview
from verifier.api.auth.guard import require_key
from verifier.api.auth.roles import ADMINS
from verifier.api.auth.terminals import (
    Terminal,
    TerminalError,
    UnknownOrganisation,
    list_terminals,
    register_terminal,
)
from verifier.api.body import json_body, read_json
from verifier.api.openapi import API_KEY_SECURITY, PROTECTED, problems
from verifier.lib.problems import Problem
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

_STORE_DOWN = "The key store cannot be reached; retry shortly."


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    before_request = require_key
    opt = {"roles": ADMINS}
    security = API_KEY_SECURITY

    @get("/sync", responses=problems(*PROTECTED), summary="Sync job state: cursor, lag, last error, generation")
    async def sync_state(self, request: Request[Any, Any, Any]) -> SyncOut:
        return await sync_overview(request.app.state.runtime)

    @post("/terminals", status_code=201, responses=problems(*PROTECTED, 404),
          operation_class=json_body(TerminalRequest, {"a desk at an airport": {
              "organisation": "Shanghai Exit-Entry Administration", "id": "PVG-T2-12", "name": "Desk 12",
              "place": "Pudong airport, T2 arrivals"}}),
          summary="Register (or rename) a terminal")
    async def register(self, request: Request[Any, Any, Any]) -> Response[Terminal]:
        """A terminal id as the organisation's checks send it, and the name and place holders are shown
        for it in "who verified me" (for earlier checks too). 201 when new, 200 when renamed."""
        data = await read_json(request, TerminalRequest)
        try:
            terminal, new = await register_terminal(request.app.state.runtime.store, data.organisation, data.id,
                                                    data.name, data.place)
        except UnknownOrganisation as exc:
            raise Problem(404, str(exc)) from None
        except TerminalError as exc:
            raise Problem(400, str(exc)) from None
        except REDIS_UNAVAILABLE:
            raise Problem(503, _STORE_DOWN, headers={"Retry-After": "1"}) from None
        return Response(terminal, status_code=201 if new else 200)

    @get("/terminals", responses=problems(*PROTECTED), summary="Every registered terminal")
    async def terminals(self, request: Request[Any, Any, Any]) -> TerminalsOut:
        try:
            return TerminalsOut(terminals=await list_terminals(request.app.state.runtime.store))
        except REDIS_UNAVAILABLE:
            raise Problem(503, _STORE_DOWN, headers={"Retry-After": "1"}) from None
