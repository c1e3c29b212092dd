"""Shared Redis fixtures: real Redis-protocol servers started by the tests, on free ports.

Registered for the whole suite by ``tests/conftest.py``. Names are stable; use them:

- ``redis_server`` (session): an :class:`EmbeddedRedis` (``persist=False``) shared by
  the whole run. Do not stop it; use ``own_redis_server`` to break things.
- ``redis_url`` (function): that server's URL, after a FLUSHALL, so each test starts
  from an empty server.
- ``redis_sync`` (function): a sync client (``verifier.lib.redis_client.sync_client``)
  on ``redis_url``, closed after the test.
- ``own_redis_server`` (function): a private server for destructive tests
  (``stop()``, ``kill()``, ``restart()`` on the same port; ``persist=True``, so a
  restart keeps the data, AOF fsync every second), stopped and removed after the test.
- ``redis_server_factory`` (function): ``make(persist=..., extra_args=...)`` for more
  private servers; all stopped after the test.
- ``redis_cluster`` (session, started lazily by the first test that asks; ~2-6 s): a
  :class:`LocalCluster` (3 primaries + 3 replicas, node timeout 2 s). A test that
  kills a node must request ``redis_cluster_url`` or call ``cluster_healed`` after, so
  that the next test gets a healthy cluster.
- ``redis_cluster_url`` (function): ``redis+cluster://...`` of that cluster, flushed,
  with every node running and ``cluster_state:ok``.

Nothing here ever binds port 6379. Servers die with the test process (PDEATHSIG).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis
from tests.support.local_cluster import LocalCluster

__all__ = [
    "cluster_healed",
    "own_redis_server",
    "redis_cluster",
    "redis_cluster_url",
    "redis_server",
    "redis_server_factory",
    "redis_sync",
    "redis_url",
]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    if not redis_server.running:  # a test stopped the shared server: bring it back
        redis_server.start()
    client = redis_server.client(socket_timeout=10)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[Any]:
    client = sync_client(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "own-redis", persist=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., EmbeddedRedis]]:
    servers: list[EmbeddedRedis] = []

    def make(**kwargs: Any) -> EmbeddedRedis:
        kwargs.setdefault("persist", False)
        server = EmbeddedRedis(tmp_path / f"redis-{len(servers)}", **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def cluster_healed(cluster: LocalCluster) -> None:
    """Restart any node a test killed and wait until the cluster is whole again."""
    for node in cluster.nodes:
        if not node.running:
            cluster.restart_node(node)
    cluster.wait_ok(timeout_s=60)


@pytest.fixture
def redis_cluster_url(redis_cluster: LocalCluster) -> Iterator[str]:
    cluster_healed(redis_cluster)
    redis_cluster.flushall()
    yield redis_cluster.url
    cluster_healed(redis_cluster)
