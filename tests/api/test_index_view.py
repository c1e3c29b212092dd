"""The API's view of the index: near-cache misses of concurrent requests share one MGET."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.api.conftest import NOT_IN_INDEX, PERMITS, World
from verifier.api.verdicts.index_view import IndexView
from verifier.api.verdicts.near_cache import NearCache
from verifier.index import PermitIndex
from verifier.lib.metrics import Metrics
from verifier.lib.redis_client import async_client


async def _mget_calls(client: Any) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def _view(client: Any) -> IndexView:
    near_cache = NearCache()
    near_cache.trusted = True  # as when the change subscription is up
    view = IndexView(PermitIndex(client), near_cache, staleness_bound_s=60.0, metrics=Metrics())
    assert await view.refresh() is not None
    return view


def test_concurrent_misses_are_read_in_one_round_trip(world: World) -> None:
    asked = [p.pn for p in PERMITS.values()] + [NOT_IN_INDEX.pn, PERMITS["valid"].pn]

    async def main() -> tuple[list[Any], int, int]:
        client = async_client(world.redis_url)
        try:
            view = await _view(client)
            await client.config_resetstat()
            now = time.time()
            answers = await asyncio.gather(*(view.permit(pn, now) for pn in asked))
            calls = await _mget_calls(client)
            # now cached: asking again costs no round trip
            again = await asyncio.gather(*(view.permit(pn, now) for pn in asked))
            return [a[0] for a in answers] + [a[0] for a in again], calls, await _mget_calls(client)
        finally:
            await client.aclose()

    records, calls, calls_after = asyncio.run(main())
    expected = [*PERMITS.values(), None, PERMITS["valid"]]
    assert records == expected + expected
    assert calls == 1
    assert calls_after == 1


def test_a_waiter_given_up_does_not_cancel_the_others(world: World) -> None:
    pn = PERMITS["valid"].pn

    async def main() -> Any:
        client = async_client(world.redis_url)
        try:
            view = await _view(client)
            now = time.time()
            first = asyncio.ensure_future(view.permit(pn, now))
            second = asyncio.ensure_future(view.permit(pn, now))
            await asyncio.sleep(0)  # both are waiting for the same read
            first.cancel()
            record, _state = await second
            assert first.cancelled()
            return record
        finally:
            await client.aclose()

    assert asyncio.run(main()) == PERMITS["valid"]
