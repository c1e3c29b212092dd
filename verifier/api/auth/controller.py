"""GET /v1/me: which key is calling (a terminal's sign-in check shows it)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get

from verifier.api.auth.guard import caller_of, require_key
from verifier.api.auth.roles import ALL_ROLES, VERIFIERS
from verifier.api.openapi import API_KEY_SECURITY, problems


class KeyOut(msgspec.Struct):
    """The calling key as its holder may see it (never the secret)."""

    key_id: str
    role: str
    name: str
    """Who holds it, as the operator named it (an agency, a counter)."""
    may_verify: bool
    """Whether this role may verify codes, cards and permits (a counter terminal needs it)."""


class MeController(Controller):
    path = "/v1/me"
    tags = ["keys"]
    before_request = require_key
    opt = {"roles": ALL_ROLES}
    security = API_KEY_SECURITY

    @get("/", responses=problems(401, 429, 503), summary="The calling API key")
    async def me(self, request: Request[Any, Any, Any]) -> KeyOut:
        """The key's id, role and name: a terminal checks its key with this at sign-in."""
        caller = caller_of(request)
        return KeyOut(key_id=caller.key_id, role=caller.role.value, name=caller.name,
                      may_verify=caller.role in VERIFIERS)
