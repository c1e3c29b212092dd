"""The request-id layer's cost per request, beside its anchor: the same ASGI app without it.

    python3 -m pytest benchmarks/test_bench_request_id.py -p no:cacheprovider --benchmark-group-by=group

Method: an ASGI app that answers with a start and a body message (the shape of every
Litestar answer), called 1,000 times per round on one event loop, with a scope of five
request headers; once bare (the anchor) and once through :func:`request_id_layer` (header
scan and check, a fresh id, the context variable, the send wrapper that adds the header;
DEBUG off, as in production). The figure is the ratio of the two, in the same run.
Caveat: a shared 2-core machine; the absolute times move with its load, the ratio less.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from verifier.api.request_id import request_id_layer

CALLS = 1000
SCOPE = {"type": "http", "method": "POST", "path": "/v1/verify/qr", "headers": [
    (b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer pvk_x"), (b"content-type", b"application/json"),
    (b"content-length", b"420"), (b"user-agent", b"scanner/1.0")]}


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Any) -> None:
    pass


async def _receive() -> Any:
    return {"type": "http.request", "body": b""}


@pytest.mark.parametrize("variant", ["anchor: bare ASGI app", "request-id layer"])
def test_request_id_layer(benchmark: Any, variant: str) -> None:
    app = _app if variant.startswith("anchor") else request_id_layer(_app)
    loop = asyncio.new_event_loop()

    async def calls() -> None:
        for _ in range(CALLS):
            await app(dict(SCOPE), _receive, _send)

    benchmark.group = "request id: 1,000 requests"
    try:
        benchmark(lambda: loop.run_until_complete(calls()))
    finally:
        loop.close()
