"""Request ids: every answer names its request, and so does every log line written while serving it.

A caller's ``X-Request-Id`` is taken when it is short and plain (1 to 64 characters of
letters, digits and ``. _ : -``, starting with a letter or digit); anything else, or none,
gets a fresh random one (32 hex digits). The id is put in :data:`REQUEST_ID` for the
request's context (``verifier.lib.logging`` adds it to each line and the audit to each
record, as ``rid``) and returned in the answer's ``X-Request-Id``.

It wraps the whole ASGI handler, outside Litestar's routing, so that 404s, 405s and
problem documents carry it too. At DEBUG it logs one line per request: method, route
template (never the path: it may hold a permit number), status and duration.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from verifier.lib.logging import REQUEST_ID

__all__ = ["HEADER", "request_id_layer", "valid_request_id"]

log = logging.getLogger("verifier.api.requests")

HEADER = b"x-request-id"
_VALID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def valid_request_id(raw: bytes) -> bool:
    return _VALID.fullmatch(raw) is not None


def _incoming(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return value if _VALID.fullmatch(value) else None
    return None


def request_id_layer(app: ASGIApp) -> Any:
    async def layer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        raw = _incoming(scope) or os.urandom(16).hex().encode()
        token = REQUEST_ID.set(raw.decode())
        status = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, raw)]
            await send(message)

        started = time.perf_counter()
        try:
            await app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.DEBUG):
                route = scope.get("path_template") or "(no route)"
                log.debug("%s %s %d %.1f ms", scope["method"], route, status[0],
                          (time.perf_counter() - started) * 1000.0,
                          extra={"method": scope["method"], "route": route, "status": status[0]})
            REQUEST_ID.reset(token)

    return layer
