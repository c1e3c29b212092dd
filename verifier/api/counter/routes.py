"""Routes of the counter page and the vendored browser packages, with their security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Router, get
from litestar.response import Redirect
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from verifier.lib.settings import Settings

__all__ = ["STATIC_DIR", "VENDOR_DIR", "counter_csp", "counter_routes", "page_headers"]

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = Path(__file__).parent.parent / "vendor"


def counter_csp(settings: Settings) -> str:
    """The page's policy: its own origin only; WebAssembly compilation for zxing-wasm; the bridge to connect to.

    No 'unsafe-inline', no data: or blob: sources: the page has no inline script or
    style, and draws nothing from elsewhere.
    """
    connect = "'self'" + (f" {settings.card_bridge_origin}" if settings.card_bridge_origin else "")
    return (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; media-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


DOCS_CSP = (
    # Swagger UI draws its icons as data: SVGs from its stylesheet; nothing else is loosened
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def page_headers(csp: str, permissions: str = "camera=(), microphone=(), geolocation=(), usb=(), payment=()") -> Any:
    """A middleware that adds the security headers of a page (and its assets) to every response."""
    headers = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"permissions-policy", permissions.encode()),
    ]

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *headers]
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return factory


class CounterConfig(msgspec.Struct):
    """What the page needs to know of the service's settings."""

    card_bridge: str | None
    """Origin of the terminal's card-reader bridge (loopback), null when card reads are off."""
    clear_after_s: float
    """Default seconds before a verdict clears itself (a terminal may change it)."""


async def _to_folder(request: Request[Any, Any, Any]) -> Redirect | None:
    """``/counter`` -> ``/counter/``: the page's modules are relative to the folder, not to ``/``."""
    # raw_path: Litestar's scope["path"] has lost the trailing slash by now
    if request.scope.get("raw_path", b"/counter/").split(b"?", 1)[0] == b"/counter":
        query = request.scope.get("query_string", b"").decode("latin-1")
        return Redirect("/counter/" + (f"?{query}" if query else ""), status_code=308)
    return None


def counter_routes(settings: Settings) -> list[Router]:
    """``/counter/`` (the page, its config) and ``/vendor/`` (the vendored packages), with their headers."""
    middleware = [page_headers(counter_csp(settings), permissions="camera=(self), microphone=(), geolocation=(), "
                                                                  "usb=(), payment=()")]
    config = CounterConfig(card_bridge=settings.card_bridge_origin or None, clear_after_s=settings.counter_clear_s)

    @get("/config.json", include_in_schema=False, cache_control=CacheControlHeader(no_cache=True))
    async def counter_config() -> CounterConfig:
        return config

    # no-cache: the browser revalidates (ETag) so that an upgraded service serves its new page at once
    revalidate = CacheControlHeader(no_cache=True)
    page = create_static_files_router(
        "/counter", [STATIC_DIR], html_mode=True, name="counter", cache_control=revalidate,
        include_in_schema=False, middleware=middleware, before_request=_to_folder,
    )
    vendor = create_static_files_router(
        "/vendor", [VENDOR_DIR], name="vendor", cache_control=revalidate, include_in_schema=False,
        middleware=middleware,
    )
    return [Router("/counter", route_handlers=[counter_config], middleware=middleware), page, vendor]
