"""GET (and HEAD) /health/live, /health/ready and /metrics: public, unauthenticated.

HEAD answers what GET would, headers only (the server sends no body): a load balancer's
or a scraper's probe that asks with HEAD gets 200 or 503, not 405.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, Response, route
from litestar.openapi.datastructures import ResponseSpec

from verifier.api.health.schemas import LiveOut, ReadyChecks, ReadyOut
from verifier.api.verdicts.index_view import IndexUnavailableError
from verifier.lib.redis_errors import REDIS_UNAVAILABLE


_GET_AND_HEAD = ["GET", "HEAD"]
# Prometheus' text format; Litestar adds the one "; charset=utf-8" to a text/ type itself
# (naming it here too gave two).
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"


class HealthController(Controller):
    tags = ["health"]

    @route("/health/live", http_method=_GET_AND_HEAD, summary="The process answers")
    async def live(self) -> LiveOut:
        return LiveOut()

    @route("/health/ready", http_method=_GET_AND_HEAD, summary="Redis reachable, index fresh, trust list loaded (and the store's state)",
         responses={503: ResponseSpec(data_container=ReadyOut, description="Not ready: the checks say why.")})
    async def ready(self, request: Request[Any, Any, Any]) -> Response[ReadyOut]:
        runtime = request.app.state.runtime
        now = time.time()
        try:
            redis_ok = bool(await runtime.redis.ping())
        except REDIS_UNAVAILABLE:
            redis_ok = False
        if runtime.store is runtime.redis:
            store_ok = redis_ok
        else:
            try:
                store_ok = bool(await runtime.store.ping())
            except REDIS_UNAVAILABLE:
                store_ok = False
        state = runtime.index.state
        try:
            runtime.index.usable_state(now)
            index = "fresh"
        except IndexUnavailableError as exc:
            index = exc.reason
        trust_ok = runtime.trust.current is not None
        ready = redis_ok and index == "fresh" and trust_ok
        out = ReadyOut(
            ready=ready,
            checks=ReadyChecks(redis=redis_ok, index=index, trust_list=trust_ok, store=store_ok),
            index_as_of=state.as_of if state is not None else None,
            lag_s=round(now - state.confirmed_at, 3) if state is not None and state.confirmed_at else None,
        )
        return Response(out, status_code=200 if ready else 503)

    @route("/metrics", http_method=_GET_AND_HEAD, media_type=METRICS_MEDIA_TYPE,
           summary="Prometheus metrics of all workers", include_in_schema=True)
    async def metrics(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await request.app.state.runtime.render_metrics()
        return Response(body, media_type=METRICS_MEDIA_TYPE)
