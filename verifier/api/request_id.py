"""Request ids: every answer names its request, and so does every log line written while serving it.

A caller's ``X-Request-Id`` is taken when it is short and plain (1 to 64 characters of
letters, digits and ``. _ : -``, starting with a letter or digit); anything else, or none,
gets a fresh one (32 hex digits: a random prefix of the process, then a counter; unique
across processes and restarts, and cheaper than 16 random bytes a request). The id is put in :data:`REQUEST_ID` for the
request's context (``verifier.lib.logging`` adds it to each line and the audit to each
record, as ``rid``) and returned in the answer's ``X-Request-Id``.

It wraps the whole ASGI handler, outside Litestar's routing, so that 404s, 405s and
problem documents carry it too. At DEBUG it logs one line per request: method, route
template (never the path: it may hold a permit number), status and duration.
"""

from __future__ import annotations

import itertools
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


_prefix = os.urandom(8).hex()
_counter = itertools.count(1)


def _reseed() -> None:  # a forked worker must not repeat its parent's ids
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def fresh_request_id() -> bytes:
    return b"%s%016x" % (_prefix.encode(), next(_counter))


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
        raw = _incoming(scope) or fresh_request_id()
        token = REQUEST_ID.set(raw.decode())
        status = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, raw)]
            await send(message)

        debug = log.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        try:
            await app(scope, receive, send_with_id)
        finally:
            if debug:
                route = scope.get("path_template") or "(no route)"
                log.debug("%s %s %d %.1f ms", scope["method"], route, status[0],
                          (time.perf_counter() - started) * 1000.0,
                          extra={"method": scope["method"], "route": route, "status": status[0]})
            REQUEST_ID.reset(token)

    return layer
