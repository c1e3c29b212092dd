"""The one gate of every protected endpoint: API key -> role -> rate limit.

A ``before_request`` hook, ``async`` (sync hooks run in the thread pool, +25 µs),
rather than a Litestar guard: Litestar copies the route handler for every guard
call (~60 attribute sets a request). It runs before the request's parameters are
parsed, so an unauthenticated caller learns nothing about its parameters. The
endpoint states the roles it admits in its ``opt["roles"]``. The key travels as
``Authorization: Bearer pvk_...`` or ``X-API-Key: pvk_...``.

Missing or bad key -> 401; a role not admitted -> 403; over the key's rate ->
429 with Retry-After; all problem documents (verifier/lib/problems.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection

from verifier.api.auth.keys import Caller
from verifier.api.ratelimit.limiter import retry_after
from verifier.lib.problems import Problem
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = ["CALLER_SCOPE_KEY", "caller_of", "require_key", "token_from_headers"]

CALLER_SCOPE_KEY = "pv.caller"
_CHALLENGE_HEADERS = {"WWW-Authenticate": 'Bearer realm="permit-verifier"'}


def token_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key a request carries: its first ``Authorization: Bearer`` (which decides,
    a malformed one giving None), else its last ``X-API-Key``. The raw header list:
    cheaper than building Litestar's Headers for two look-ups."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() if scheme.lower() == "bearer" and credentials else None
        if name == b"x-api-key":
            api_key = value.decode("latin-1")
    return api_key


def _token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return token_from_headers(connection.scope["headers"])


async def require_key(connection: Request[Any, Any, Any]) -> None:
    roles = connection.scope["route_handler"].opt.get("roles")
    if roles is None:
        if connection.scope.get("method") == "OPTIONS":
            return  # Litestar's automatic OPTIONS answer (Allow header) reveals nothing
        raise Problem(403, "This endpoint admits no role.")  # a handler that forgot its roles fails closed
    runtime = connection.app.state.runtime
    token = _token(connection)
    if not token:
        raise Problem(401, "Send an API key: 'Authorization: Bearer pvk_...' or 'X-API-Key: pvk_...'.",
                      headers=_CHALLENGE_HEADERS)
    try:
        caller = await runtime.keys.authenticate(token)
    except REDIS_UNAVAILABLE:
        # A key this worker has never seen, and Redis cannot be asked: not the caller's fault.
        raise Problem(503, "The key store cannot be reached; retry shortly.", headers={"Retry-After": "1"}) from None
    if caller is None:
        raise Problem(401, "The API key is unknown, revoked or malformed.", headers=_CHALLENGE_HEADERS)
    if caller.role not in roles:
        raise Problem(403, f"The role {caller.role.value!r} may not use this endpoint.")
    wait = await runtime.limiter.acquire(caller.key_id)
    if wait is not None:
        raise Problem(429, "This API key is over its rate limit.", headers={"Retry-After": retry_after(wait)})
    connection.scope[CALLER_SCOPE_KEY] = caller  # type: ignore[literal-required]


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    return connection.scope[CALLER_SCOPE_KEY]  # type: ignore[literal-required,no-any-return]
