"""The OpenAPI UI at ``/schema`` (Swagger UI), from the project's own copy: it works on an offline network.

Litestar's Swagger plugin loads Swagger UI from a CDN and starts it with an inline
script; this one serves ``/vendor/swagger-ui-dist/`` (``scripts/vendor-browser.sh``) and
``swagger-init.js`` beside this file, so the UI runs under a CSP without
'unsafe-inline'. Any other ``/schema/...`` path is a problem document, not Litestar's
HTML 404 page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from verifier.api.counter.routes import DOCS_CSP, page_headers
from verifier.lib.problems import problem_response

__all__ = ["LocalSwaggerPlugin", "schema_router"]

_INIT_SCRIPT = (Path(__file__).parent / "swagger-init.js").read_bytes()


class LocalSwaggerPlugin(OpenAPIRenderPlugin):
    """Swagger UI from ``/vendor``, started by ``/schema/swagger-init.js``."""

    def __init__(self, path: str = "/swagger") -> None:
        super().__init__(path=path, favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema["info"]["title"]))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="/counter/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/vendor/swagger-ui-dist/swagger-ui.css">
<script src="/vendor/swagger-ui-dist/swagger-ui-bundle.js" defer></script>
<script src="/schema/swagger-init.js" defer></script>
</head>
<body>
<div id="swagger-ui" data-openapi="{html.escape(self.get_openapi_json_route(request))}"></div>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        @get("/swagger-init.js", media_type="text/javascript", include_in_schema=False, sync_to_thread=False,
             cache_control=CacheControlHeader(no_cache=True))
        def swagger_init() -> bytes:
            return _INIT_SCRIPT

        router.register(swagger_init)


def _problems_for_unknown_paths(app: ASGIApp) -> ASGIApp:
    """Litestar answers an unknown ``/schema/...`` path with an HTML page: answer a 404 problem document instead."""
    from litestar._openapi.plugin import handle_schema_path_not_found

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        if getattr(handler, "fn", None) is handle_schema_path_not_found:
            response: Response[Any] = problem_response(404, "No such page of the API documentation.")
            await response.to_asgi_response(None, Request(scope))(scope, receive, send)
            return
        await app(scope, receive, send)

    return middleware


def schema_router(path: str = "/schema") -> Router:
    """The router Litestar fills with the schema and UI handlers, with the docs' headers."""
    return Router(path, route_handlers=[], include_in_schema=False,
                  middleware=[page_headers(DOCS_CSP), _problems_for_unknown_paths])
