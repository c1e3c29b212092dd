"""``POST /v1/verify/qr`` in its plain case, answered without the framework's layers.

Every scan at a border crossing is this request, and on one worker Litestar's layers
around it (exception middleware, router, route handler, the ``before_request`` gate,
signature model, response pipeline, our metrics middleware: ~40 µs of the ~150 µs a
new code costs on the development machine, more than everything the verification
adds to libsodium's verify) were the largest cost left. This ASGI layer sits in
front of Litestar's own handler (``app.asgi_handler``) and answers the request
itself when it is the plain case, and only then:

- ``POST`` to exactly ``/v1/verify/qr``;
- one ``Content-Type``, ``application/json`` (optionally ``; charset=utf-8``), one
  ``Content-Length`` within the route's ``request_max_body_size``, no
  ``Transfer-Encoding``, no ``Expect``; no ``Origin`` when CORS is configured (the
  CORS middleware answers those);
- an API key this worker has checked before, still in its key cache
  (:meth:`KeyVerifier.known`), of a role the route admits;
- a body that decodes strictly as :class:`QrRequest`, with no backslash and no key
  name twice (so no duplicate key can hide in it);
- a token of the key's rate limit (:meth:`RateLimiter.acquire`, taken last: a request
  it refuses goes on, and the full path asks again and answers 429).

Anything else goes on to Litestar unchanged, with whatever body was read replayed to
it, so every refusal (401, 403, 413, 415, 400, 429, 503) is the full path's own
answer: nothing here decides a refusal, and nothing with a side effect happens
before the request is known to be plain (the rate-limit token is taken last, and
only taken when granted). The
answer is the full path's too: the same service call
(``runtime.verifications.qr``), the same JSON bytes and headers (``content-type``,
``content-length``, ``server-timing``), the same request metrics; a bug is logged
and answered as the exception handlers answer it (a bare 500 problem document).
``tests/api/test_hot_route.py`` holds the two paths to that.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from verifier.api.auth.guard import CALLER_SCOPE_KEY, token_from_headers
from verifier.api.qr.schemas import QrRequest
from verifier.api.responses import encode
from verifier.lib.problems import internal_error_handler

__all__ = ["PATH", "HotRoute", "install_hot_route"]

PATH = "/v1/verify/qr"
_PLAIN_JSON = frozenset({b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"})
_CONTENT_TYPE = (b"content-type", b"application/json")
_REQUEST_LABELS = (PATH, "POST", "200")
_ROUTE_LABELS = (PATH,)
# Header names that take a request off the plain case (their handling is the full path's).
_NOT_PLAIN = frozenset({b"transfer-encoding", b"expect"})


def install_hot_route(app: Litestar, runtime: Any, *, cors: bool) -> "HotRoute":
    """Put the plain case of ``POST /v1/verify/qr`` in front of ``app``'s handler (layers
    wrapped around ``app.asgi_handler`` later, such as one naming each request, wrap it too);
    the route is also ``app.state.hot_route``."""
    route = HotRoute(app, app.asgi_handler, runtime, _route_handler(app), cors=cors)
    app.asgi_handler = route
    app.state.hot_route = route
    return route


def _route_handler(app: Litestar) -> Any:
    from litestar.routes import HTTPRoute

    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path == PATH:
            for handler in route.route_handlers:
                if "POST" in handler.http_methods:
                    return handler
    raise LookupError(f"no POST {PATH} route to put the hot route in front of")


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands out ``messages`` (what was already read), then the real ones."""
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class HotRoute:
    """The ASGI layer; ``full`` is the handler it passes everything else on to."""

    __slots__ = ("app", "full", "runtime", "handler", "roles", "max_body", "cors", "enabled", "answered", "_decode")

    def __init__(self, app: Litestar, full: ASGIApp, runtime: Any, handler: Any, *, cors: bool) -> None:
        self.app = app
        self.full = full
        self.runtime = runtime
        self.handler = handler
        self.roles = frozenset(handler.opt["roles"])
        self.max_body: int = handler.resolve_request_max_body_size() or 0
        self.cors = cors
        self.enabled = True
        """False: everything goes on to ``full`` (the tests and the profiler compare the two paths)."""
        self.answered = 0
        """Requests answered here (the rest went on to ``full``)."""
        self._decode = msgspec.json.Decoder(QrRequest).decode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or not self.enabled:
            await self.full(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope["headers"]
        max_body = self.max_body
        content_type = length = None
        plain = True
        cors = self.cors
        for name, value in headers:
            if name == b"content-type":
                plain = plain and content_type is None
                content_type = value
            elif name == b"content-length":
                plain = plain and length is None
                length = value
            elif name in _NOT_PLAIN or (cors and name == b"origin"):
                plain = False
        if (not plain or content_type is None or length is None or content_type.lower() not in _PLAIN_JSON
                or not length.isdigit() or int(length) > max_body):
            await self.full(scope, receive, send)
            return
        runtime = self.runtime
        token = token_from_headers(headers)
        keys = getattr(runtime, "keys", None)  # None until the lifespan has started the runtime
        caller = keys.known(token) if token and keys is not None else None
        if caller is None or caller.role not in self.roles:
            await self.full(scope, receive, send)  # nothing read yet: the full path asks, or refuses
            return
        # The body (its size was announced within the bound; more than announced is the full path's 413).
        messages: list[Message] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: the full path's answer
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > max_body or not message.get("more_body", False):
                break
        data = None
        if message["type"] == "http.request" and size <= max_body and not message.get("more_body", False):
            raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            # QrRequest forbids unknown fields: with no escape in the text, each key it can hold
            # appearing at most once (as a key or as a value) means that no key is there twice.
            if (raw.find(b"\\") < 0 and raw.count(b'"qr"') == 1 and raw.count(b'"terminal"') <= 1
                    and raw.count(b'"receipt"') <= 1):
                try:
                    data = self._decode(raw)
                except msgspec.DecodeError:  # ValidationError included: the full path words the 400
                    data = None
        # Last, the one step with a side effect: a token of the key's rate (usually from the
        # lease at hand; else the refill every waiter shares). Refused: the full path asks again
        # and gives the 429 (a refusal takes no token).
        if data is None or await runtime.limiter.acquire(caller.key_id) is not None:
            await self.full(scope, _replaying(messages, receive), send)
            return

        # The plain case: from here on this request is ours.
        self.answered += 1
        scope[CALLER_SCOPE_KEY] = caller  # type: ignore[literal-required]
        scope["route_handler"] = self.handler  # named in the error log, as on the full path
        try:
            verdict = await runtime.verifications.qr(data.qr, caller, data.terminal, data.receipt)
            body = encode(verdict)
        except Exception as exc:  # a bug: answered and logged as the exception handlers do
            await _internal_error(self.app, scope, receive, send, exc, started)
            return
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [_CONTENT_TYPE, (b"content-length", b"%d" % len(body)),
                        (b"server-timing", b"app;dur=%.2f" % ((time.perf_counter() - started) * 1000.0))],
        })
        await send({"type": "http.response.body", "body": body, "more_body": False})
        metrics = runtime.metrics
        metrics.inc("pv_requests", _REQUEST_LABELS)
        metrics.observe("pv_request_duration_seconds", _ROUTE_LABELS, time.perf_counter() - started)


async def _internal_error(app: Litestar, scope: Scope, receive: Receive, send: Send, exc: Exception,
                          started: float) -> None:
    request = Request(scope, receive)
    response = internal_error_handler(request, exc)
    status = response.status_code
    took_ms = (time.perf_counter() - started) * 1000.0

    async def with_timing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"server-timing", b"app;dur=%.2f" % took_ms)]
        await send(message)

    try:
        await response.to_asgi_response(app=None, request=request)(scope, receive, with_timing)
    finally:
        metrics = app.state.runtime.metrics
        metrics.inc("pv_requests", (PATH, "POST", str(status)))
        metrics.observe("pv_request_duration_seconds", _ROUTE_LABELS, time.perf_counter() - started)
