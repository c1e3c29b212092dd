"""A local 6-node Redis Cluster (3 primaries, 3 replicas) for the cluster and failover
tests: test weight, kept out of the product (``verifier.lib.redis_server`` has the
single server it is made of). Made with ``redis-cli --cluster create`` (or
``valkey-cli``) over :class:`~verifier.lib.redis_server.EmbeddedRedis` nodes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from verifier.lib.redis_server import EmbeddedRedis, RedisServerError, find_cli_binary, find_server_binary

__all__ = ["LocalCluster"]


class LocalCluster:
    """A 6-node Redis Cluster (3 primaries, 3 replicas) on free ports of 127.0.0.1.

    ``node_timeout_ms`` is short (2 s) so that a killed primary fails over within a few
    seconds in tests. ``url`` is ``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...``
    (see :mod:`verifier.lib.redis_client`).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        node_timeout_ms: int = 2000,
        binary: str | None = None,
        cli_binary: str | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path(
            tempfile.mkdtemp(prefix="verifier-cluster-")
        )
        self.primaries = primaries
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        self.binary = binary or find_server_binary()
        self.cli_binary = cli_binary or find_cli_binary()
        self.start_timeout_s = start_timeout_s
        self.nodes: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes if n.running)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes if n.port is not None]

    def _node_args(self, port_dir: Path) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(port_dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # Replicas must take over even when they saw the primary only briefly.
            "--cluster-replica-validity-factor", "0",
            # Replicas sync at once (Redis 7 waits 5 s for more replicas by default):
            # a failover before the first sync would lose everything.
            "--repl-diskless-sync-delay", "0",
        ]

    def start(self) -> "LocalCluster":
        total = self.primaries * (1 + self.replicas_per_primary)
        last_error = ""
        for _ in range(3):  # a port taken between picking and binding: start over
            self.nodes = []
            try:
                for i in range(total):
                    port_dir = self.state_dir / f"node-{i}"
                    shutil.rmtree(port_dir, ignore_errors=True)
                    port_dir.mkdir(parents=True)
                    node = EmbeddedRedis(
                        port_dir, persist=False, binary=self.binary, cluster_bus=True,
                        extra_args=self._node_args(port_dir),
                    )
                    node.start()
                    self.nodes.append(node)
                self._create()
                self.wait_ok()
                return self
            except RedisServerError as exc:
                last_error = str(exc)
                self._stop_nodes()
        raise RedisServerError(f"the local cluster did not start: {last_error}")

    def _create(self) -> None:
        command = [
            self.cli_binary, "--cluster", "create",
            *[f"127.0.0.1:{n.port}" for n in self.nodes],
            "--cluster-replicas", str(self.replicas_per_primary),
            "--cluster-yes",
        ]
        result = subprocess.run(  # noqa: S603
            command, capture_output=True, timeout=self.start_timeout_s, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise RedisServerError(
                "cluster create failed: " + (result.stdout + result.stderr).decode(errors="replace")[-3000:]
            )

    def cluster_info(self, node: EmbeddedRedis) -> dict[str, str]:
        client = node.client(socket_timeout=2.0, socket_connect_timeout=1.0)
        try:
            text = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        if isinstance(text, bytes):
            text = text.decode()
        if isinstance(text, dict):  # some redis-py versions parse it
            return {str(k): str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def wait_ok(self, timeout_s: float | None = None) -> None:
        """Until every running node says ``cluster_state:ok`` and knows every slot."""
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        last = ""
        while time.monotonic() < deadline:
            try:
                infos = [self.cluster_info(n) for n in self.nodes if n.running]
                if infos and all(
                    i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384"
                    for i in infos
                ) and self._slots_served_by_running_primaries() and self._replicas_in_sync():
                    return
                last = repr(infos[:1])
            except (redis.RedisError, OSError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise RedisServerError(f"the cluster did not reach cluster_state:ok: {last}")

    def _slots_served_by_running_primaries(self) -> bool:
        # After a kill the survivors still say "ok" until node_timeout passes: also ask
        # every running node that each slot's primary is a live node.
        running = {n.port for n in self.nodes if n.running}
        for node in self.nodes:
            if not node.running:
                continue
            client = node.client(socket_timeout=2.0)
            try:
                covered = 0
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(primary[1]) not in running:
                        return False
                    covered += end - start + 1
                if covered != 16384:
                    return False
            finally:
                client.close()
        return True

    def _replicas_in_sync(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            client = node.client(socket_timeout=2.0)
            try:
                info = client.info("replication")
            finally:
                client.close()
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def wait_replicated(self, timeout_s: float = 10.0) -> None:
        """Until every replica has acknowledged everything its primary had when called.

        Replication is asynchronous: a failover loses whatever the replica had not
        received. Failure tests call this before killing a primary when they mean to
        test recovery rather than loss.
        """
        deadline = time.monotonic() + timeout_s
        targets: dict[int, int] = {}
        for node in self.nodes:
            if node.running:
                client = node.client(socket_timeout=2.0)
                try:
                    info = client.info("replication")
                finally:
                    client.close()
                if info.get("role") == "master" and int(info.get("connected_slaves", 0)) > 0:
                    targets[node.port or 0] = int(info["master_repl_offset"])
        while True:
            behind = []
            for node in self.nodes:
                if node.port in targets and node.running:
                    client = node.client(socket_timeout=2.0)
                    try:
                        info = client.info("replication")
                    finally:
                        client.close()
                    replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
                    if not replicas or any(int(r.get("offset", 0)) < targets[node.port or 0] for r in replicas):
                        behind.append((node.port, replicas))
            if not behind:
                return
            if time.monotonic() > deadline:
                raise RedisServerError(f"replicas did not catch up: {behind}")
            time.sleep(0.02)

    def primary_for_slot(self, slot: int) -> EmbeddedRedis:
        """The running node that serves ``slot`` as a primary right now."""
        for node in self.nodes:
            if not node.running:
                continue
            client = node.client(socket_timeout=2.0)
            try:
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
            except (redis.RedisError, OSError, StopIteration):
                continue
            finally:
                client.close()
        raise RedisServerError(f"no node serves slot {slot}")

    @staticmethod
    def key_slot(key: str | bytes) -> int:
        from redis.crc import key_slot

        return key_slot(key.encode() if isinstance(key, str) else key)

    def kill_primary(self, key: str | bytes | None = None) -> EmbeddedRedis:
        """SIGKILL the primary that serves ``key``'s slot (or slot 0); returns that node."""
        node = self.primary_for_slot(self.key_slot(key) if key is not None else 0)
        node.kill()
        return node

    def restart_node(self, node: EmbeddedRedis) -> None:
        """Bring a killed node back; it rejoins (as a replica after a failover)."""
        node.start()

    def flushall(self) -> None:
        for node in self.nodes:
            if not node.running:
                continue
            client = node.client(socket_timeout=5.0)
            try:
                with contextlib.suppress(redis.ReadOnlyError, redis.ResponseError):
                    client.flushall()
            finally:
                client.close()

    def _stop_nodes(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        self.nodes = []

    def stop(self) -> None:
        self._stop_nodes()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[EmbeddedRedis]:
        return iter(self.nodes)

