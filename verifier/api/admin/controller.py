"""GET /v1/admin/sync (admin keys only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from verifier.api.admin.schemas import SyncOut
from verifier.api.admin.service import sync_overview
from verifier.api.auth.guard import require_key
from verifier.api.auth.roles import ADMINS
from verifier.api.openapi import API_KEY_SECURITY, PROTECTED, problems


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    before_request = require_key
    opt = {"roles": ADMINS}
    security = API_KEY_SECURITY

    @get("/sync", responses=problems(*PROTECTED), summary="Sync job state: cursor, lag, last error, generation")
    async def sync_state(self, request: Request[Any, Any, Any]) -> SyncOut:
        return await sync_overview(request.app.state.runtime)
