"""Redis going away: a clean IndexUnavailable, then recovery by itself when it returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from verifier.index import (
    IndexNotReady,
    IndexUnavailable,
    IndexWriter,
    PermitIndex,
    SyncPermitIndex,
)
from verifier.lib.redis_client import async_client, sync_client
from verifier.lib.redis_server import EmbeddedRedis

from .conftest import Leader, event, make_record, pn_of, run

pytestmark = pytest.mark.integration


def _loaded(server: EmbeddedRedis) -> tuple[Any, Leader]:
    client = sync_client(server.url)
    writer = IndexWriter(client)
    fence = writer.acquire_leadership("t", ttl_s=600)
    assert fence is not None
    leader = Leader(writer, fence, "t")
    leader.load([make_record(i) for i in range(10)], seq=1)
    return client, leader


def test_stopped_redis_is_unavailable_then_recovers(own_redis_server: EmbeddedRedis) -> None:
    client, leader = _loaded(own_redis_server)
    reader = SyncPermitIndex(client)
    assert reader.get(pn_of(1)) is not None

    async def scenario() -> None:
        aclient = async_client(own_redis_server.url)
        index = PermitIndex(aclient)
        try:
            assert await index.get(pn_of(2)) is not None
            own_redis_server.stop()
            for call in (index.get(pn_of(2)), index.get_many("ssn", ["S1"]), index.freshness()):
                with pytest.raises(IndexUnavailable):
                    await call
            with pytest.raises(IndexUnavailable):
                reader.get(pn_of(1))
            with pytest.raises(IndexUnavailable):
                leader.apply([event(2, make_record(1, v=2))], cursor_before=1)
            with pytest.raises(IndexUnavailable):
                leader.writer.state()
            own_redis_server.start()  # same port, data kept (AOF)
            record = None
            for _ in range(100):  # the same reader objects recover by themselves
                try:
                    record = await index.get(pn_of(2))
                    break
                except IndexUnavailable:
                    await asyncio.sleep(0.05)
            assert record == make_record(2)
            assert (await index.freshness()).ready
        finally:
            await aclient.aclose()

    run(scenario())
    assert reader.get(pn_of(1)) == make_record(1)
    assert leader.apply([event(2, make_record(1, v=2))], cursor_before=1).applied == 1
    client.close()


def test_restart_without_data_is_not_ready(redis_server_factory: Callable[..., EmbeddedRedis]) -> None:
    server = redis_server_factory(persist=False)
    client, leader = _loaded(server)
    reader = SyncPermitIndex(client)
    assert reader.get(pn_of(1)) is not None
    server.kill()
    server.start()
    for _ in range(100):
        try:
            reader.get(pn_of(1))
        except IndexUnavailable:
            continue
        except IndexNotReady:
            break
    else:
        pytest.fail("the reader never said IndexNotReady after Redis lost its data")
    assert leader.writer.state().ready is False
    # The old leader lock went with the data: the writer must take leadership anew.
    assert leader.writer.acquire_leadership("t2", ttl_s=30) is not None
    client.close()


def test_unreachable_url_is_unavailable() -> None:
    from verifier.lib.redis_server import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        aclient = async_client(url)
        try:
            with pytest.raises(IndexUnavailable):
                await PermitIndex(aclient).get("WP1")
            with pytest.raises(IndexUnavailable):
                await PermitIndex(aclient).freshness()
        finally:
            await aclient.aclose()

    run(scenario())
    client = sync_client(url)
    with pytest.raises(IndexUnavailable):
        SyncPermitIndex(client).get("WP1")
    with pytest.raises(IndexUnavailable):
        IndexWriter(client).acquire_leadership("x", 10)
    client.close()


def test_one_definition_of_redis_unavailable() -> None:
    import redis

    from verifier.lib.redis_errors import REDIS_UNAVAILABLE, redis_unavailable

    # what redis-py and the socket raise when Redis cannot answer; TimeoutError is an OSError
    for raised in (redis.ConnectionError("refused"), redis.TimeoutError("slow"), TimeoutError(),
                   asyncio.TimeoutError(), ConnectionResetError(), AttributeError("writelines")):
        assert isinstance(raised, REDIS_UNAVAILABLE)
    assert not isinstance(ValueError(), REDIS_UNAVAILABLE)
    refused = redis_unavailable(redis.ResponseError("OOM command not allowed"), IndexUnavailable)
    assert isinstance(refused, IndexUnavailable)
    assert str(refused) == "redis refused a command: OOM command not allowed"
    assert str(redis_unavailable(ConnectionRefusedError(111, "x"), IndexUnavailable)).startswith(
        "redis unreachable: ConnectionRefusedError(")
