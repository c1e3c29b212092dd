"""GET /v1/status-lists/{name}: the Status List Token as the writer stored it, for anyone.

The raw COSE bytes (``application/statuslist+cwt``), with a strong ``ETag`` and
``Cache-Control: public, max-age=...`` (the list's ``ttl``, never past its ``exp``),
and ``304 Not Modified`` when ``If-None-Match`` names the list held (RFC 9110 13.1.2,
weak comparison). No API key: the lists hold bits and no person (a permit's entry
number is in its own token), and every scanner, online or not, needs them.
A list that is not published yet, or has expired (its writer stopped), is a 503:
a verifier must not use it, and the one it holds tells the same.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from verifier.api.openapi import problems
from verifier.index.status_lists import MEDIA_TYPE, NAMES, PATH, PublishedList, StatusListKeys, load_published
from verifier.lib.problems import Problem
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

_KEYS = StatusListKeys()


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: ``*``, or any listed tag equal to ours by the weak comparison."""
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))


class StatusListController(Controller):
    path = PATH
    tags = ["public"]

    @get(
        "/{name:str}",
        summary="A Status List Token (WIRE-FORMAT 8): the signed status of every permit or card",
        description="`permits` (2 bits an entry: 0 valid, 1 cancelled, 2 suspended) or `cards` (1 bit: 0 valid, "
        "1 not valid). The raw COSE_Sign1 bytes; verify them with the keys of `use` \"status\" in "
        "/v1/trust-list. Cache them for `ttl` seconds; 304 on a matching If-None-Match.",
        responses={
            200: ResponseSpec(data_container=bytes, media_type=MEDIA_TYPE, description="The Status List Token.",
                              generate_examples=False),
            304: ResponseSpec(data_container=None, description="The list named by If-None-Match is current.",
                              generate_examples=False),
            **problems(404, 503),
        },
    )
    async def status_list(
        self,
        request: Request[Any, Any, Any],
        name: str = Parameter(description="`permits` or `cards`"),
    ) -> Response[bytes]:
        if name not in NAMES:
            raise Problem(404, f"No Status List by that name; the lists are {', '.join(NAMES)}.")
        try:
            held: PublishedList | None = await load_published(request.app.state.runtime.redis, name, _KEYS)
        except REDIS_UNAVAILABLE:
            raise Problem(503, "The Status Lists cannot be read now.", headers={"Retry-After": "1"}) from None
        now = int(time.time())
        if held is None or held.exp <= now:
            raise Problem(503, "This Status List is not published yet, or has expired (its writer is not running).",
                          headers={"Retry-After": "5"})
        headers = {"ETag": held.etag, "Cache-Control": f"public, max-age={max(0, min(held.ttl, held.exp - now))}"}
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and _matches(if_none_match, held.etag):
            return Response(b"", status_code=304, headers=headers, media_type=MEDIA_TYPE)
        return Response(held.token, media_type=MEDIA_TYPE, headers=headers)
