"""Request counts and latencies, as a bare ASGI middleware (the Prometheus plugin costs ~25 µs a request).

Litestar runs middleware after routing, so the route template is in the scope and
serves as the label (never the raw path: it may hold a permit number).

Every answer also says how long the service took to produce it, up to its first
byte, as ``Server-Timing: app;dur=<ms>`` (W3C Server Timing): a terminal or a
benchmark can tell the service's own time from the network's and its own.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from verifier.lib.metrics import Metrics


def metrics_middleware(metrics: Metrics) -> Any:
    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = [500]

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    took_ms = (time.perf_counter() - started) * 1000.0
                    message["headers"] = [*message.get("headers", ()), (b"server-timing", b"app;dur=%.2f" % took_ms)]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                route = scope.get("path_template") or "?"
                metrics.inc("pv_requests", (route, scope["method"], str(status[0])))
                metrics.observe("pv_request_duration_seconds", (route,), time.perf_counter() - started)

        return middleware

    return factory
