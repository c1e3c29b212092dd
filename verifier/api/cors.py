"""CORS for agencies that host their own front end: the origins of ``settings.cors_origins``, nothing else.

Not Litestar's CORSConfig: it answers a refused preflight with a text/plain 400, and
every error of this API is a problem document. A preflight from a listed origin for
a method and headers the API takes gets 204 with the ``Access-Control-*`` headers; any
other preflight gets 403 (problem document) and no such header, so the browser
refuses the call. Simple and actual requests from a listed origin get
``Access-Control-Allow-Origin`` with that origin (never ``*``) and the headers a
front end may read. No credentials mode: the key travels in a header, never a cookie.
With no origin listed the middleware is not installed at all.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from verifier.lib.problems import problem_response

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "cors_middleware"]

ALLOWED_METHODS = frozenset({"GET", "POST"})
ALLOWED_HEADERS = frozenset({"authorization", "x-api-key", "content-type"})
_EXPOSED = b"Retry-After, Server-Timing"
_MAX_AGE = b"600"


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


def cors_middleware(origins: tuple[str, ...]) -> Any:
    allowed = frozenset(origin.encode() for origin in origins)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            origin = _header(scope, b"origin") if scope["type"] == "http" else None
            if origin is None:
                await app(scope, receive, send)
                return
            method = _header(scope, b"access-control-request-method")
            if scope["method"] == "OPTIONS" and method is not None:
                await _preflight(scope, receive, send, origin, method)
                return
            if origin not in allowed:
                await app(scope, receive, send)  # the browser withholds the answer from that page
                return

            async def send_with_cors(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [
                        *message.get("headers", ()), (b"access-control-allow-origin", origin),
                        (b"access-control-expose-headers", _EXPOSED), (b"vary", b"Origin"),
                    ]
                await send(message)

            await app(scope, receive, send_with_cors)

        async def _preflight(scope: Scope, receive: Receive, send: Send, origin: bytes, method: bytes) -> None:
            requested = _header(scope, b"access-control-request-headers") or b""
            headers = {h.strip().lower() for h in requested.decode("latin-1").split(",") if h.strip()}
            refusal = None
            if origin not in allowed:
                refusal = "This origin may not call the API from a browser."
            elif method.decode("latin-1") not in ALLOWED_METHODS:
                refusal = "The API takes GET and POST only."
            elif not headers <= ALLOWED_HEADERS:
                refusal = f"The API reads only these request headers: {', '.join(sorted(ALLOWED_HEADERS))}."
            if refusal is not None:
                response = problem_response(403, refusal, headers={"Vary": "Origin"})
                await response.to_asgi_response(None, Request(scope))(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 204, "headers": [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", b"Authorization, X-API-Key, Content-Type"),
                (b"access-control-max-age", _MAX_AGE),
                (b"vary", b"Origin"),
            ]})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        return middleware

    return factory
