"""The API: ``create_app(settings)`` assembles the Litestar app from its capability folders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from verifier.api.admin.controller import AdminController
from verifier.api.audit.controller import AuditKeysController
from verifier.api.auth.controller import MeController
from verifier.api.body import request_components
from verifier.api.cards.controller import CardController
from verifier.api.counter.routes import counter_routes
from verifier.api.cors import cors_middleware
from verifier.api.docs import LocalSwaggerPlugin, schema_router
from verifier.api.health.controller import HealthController
from verifier.api.holder.controller import HolderController
from verifier.api.middleware import metrics_middleware
from verifier.api.openapi import COMPONENTS, add_links
from verifier.api.permits.controller import PermitController
from verifier.api.qr.controller import QrController
from verifier.api.qr.hot_route import install_hot_route
from verifier.api.receipts.controller import ReceiptController
from verifier.api.request_id import request_id_layer
from verifier.api.runtime import Runtime
from verifier.api.status_lists.controller import StatusListController
from verifier.api.trust.controller import TrustController
from verifier.api.webhooks.controller import DeadLetterController, WebhookController
from verifier.api.webhooks.service import WebhookService
from verifier.lib.problems import EXCEPTION_HANDLERS
from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.settings import Settings

__all__ = ["create_app"]

# Bodies of single verifications are small; the batch and look-up endpoints set their own.
DEFAULT_MAX_BODY = 64 * 1024


def create_app(settings: Settings, *, redis: AsyncRedisClient | None = None, store: AsyncRedisClient | None = None,
               tune_gc: bool = False) -> Litestar:
    """The one factory. ``redis``: an asyncio client to use (tests); else one is made from ``settings.redis_url``.
    ``store``: the same for the store of record (else ``settings.store_url``'s, or the index's client).
    ``tune_gc``: a serving worker's garbage-collection policy once started (``runtime.tune_gc``;
    it affects the whole process, so only the worker's own factory asks for it)."""
    if redis is None and not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (or a client): the API never runs without Redis")
    runtime = Runtime(settings, redis, store=store, tune_gc=tune_gc)
    webhooks = WebhookService(settings, lambda: runtime.store)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Litestar(
        route_handlers=[
            QrController, CardController, PermitController, TrustController, StatusListController,
            ReceiptController, AuditKeysController, AdminController, HealthController, HolderController, MeController,
            WebhookController, DeadLetterController, *counter_routes(settings),
        ],
        lifespan=[lifespan],
        state=_state(runtime, webhooks=webhooks),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[*_cors(settings), metrics_middleware(runtime.metrics)],
        request_max_body_size=DEFAULT_MAX_BODY,
        openapi_config=OpenAPIConfig(
            title="Permit verification service",
            version=_version(),
            description="Verify foreigners' work permits: QR codes, card reads, look-ups; and the holder services "
            "of the e-card platform (sign-in, the holder's permit and notice, who verified me, real-name match). "
            "A verdict is an answer (HTTP 200) whatever its result; errors are RFC 9457 problem documents.",
            path="/schema",
            components=COMPONENTS,
            render_plugins=[LocalSwaggerPlugin()],
            openapi_router=schema_router(),
        ),
        # Logging is the process's business (verifier.lib.logging, set up by `verifier serve`):
        # Litestar's default config would replace the handlers and log request details.
        logging_config=None,
        debug=False,
    )
    _allow_every_method(app)
    # The plain case of POST /v1/verify/qr without the framework's layers (anything else goes on to them).
    install_hot_route(app, runtime, cors=bool(settings.cors_origins))
    # Outside the routing, so that every answer (a 404 too) names its request.
    app.asgi_handler = request_id_layer(app.asgi_handler)
    # The bodies are decoded by the handlers (verifier/api/body.py), so Litestar does
    # not know their models: add their schemas to the generated document.
    app.openapi_schema.components.schemas.update(request_components())  # type: ignore[union-attr]
    add_links(app.openapi_schema)
    return app


def _cors(settings: Settings) -> list[Any]:
    """Other front ends' origins (an agency's own web app) may call the API from a browser; default none."""
    return [cors_middleware(settings.cors_origins)] if settings.cors_origins else []


def _allow_every_method(app: Litestar) -> None:
    """Make the automatic OPTIONS answer's ``Allow`` list every method of its path.

    Litestar (2.25) registers a controller's handlers one at a time: the OPTIONS handler
    it makes for a path when the first handler arrives answers with that first, partial
    route's methods (``POST /v1/holder/session`` alone, without its ``DELETE``). Its route
    is the one object its closure holds: give it the full route's methods."""
    from litestar.routes import HTTPRoute

    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for cell in getattr(handler.fn, "__closure__", None) or ():
                stale = cell.cell_contents
                if isinstance(stale, HTTPRoute) and stale is not route and stale.path == route.path:
                    stale.methods = set(route.methods)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("permit-verifier")
    except PackageNotFoundError:  # running from a tree that was not installed
        return "0"


def _state(runtime: Runtime, **services: Any) -> Any:
    from litestar.datastructures import State

    return State({"runtime": runtime, **services})
