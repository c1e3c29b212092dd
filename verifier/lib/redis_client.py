"""Redis clients from a URL: one sync factory (the sync job), one asyncio factory (the API).

Accepted URLs:

- ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path/to.sock?db=0``
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS):
  a Redis Cluster, given by one or more of its nodes; the rest are discovered.

Every client: hiredis parser (redis-py picks it when installed), binary responses
(records are msgpack), connect and read timeouts, retries with jittered exponential
backoff on connection errors and timeouts, a health check of idle connections.

The API's client fails fast because a verification that cannot reach the index
answers ``STATUS_UNAVAILABLE`` at once rather than hanging: every command is bounded by
a 0.5 s socket timeout and is not sent again after a timeout (a Redis that does not
answer is hung, and a second try only doubles the wait; a refused or reset connection
is retried once). The sync job's client waits longer (it writes large pipelines and
can afford to retry).

A standalone asyncio client's pool is **gated** by a :class:`Reachability`: once the
health poll that owns it (the API's freshness poll, on a connection of its own) has
failed twice in a row (0.25 s apart), every command fails at once with ``ConnectionError``
instead of waiting for its timeout, so that a hung Redis (``SIGSTOP``) leaves no queue
of waiting requests behind, and the first poll that is answered opens the gate again.

Commands are packed by hiredis on both kinds of client. redis-py does so for its
sync connections only; its asyncio connections pack in Python (~0.35 µs an
argument: 370 µs for the API's MGET of 1,000 permits, against 25 µs in hiredis), so
the asyncio standalone client gets a connection class that packs as the sync one
does (same bytes; hiredis formats str, bytes, int and float as redis-py's encoder).
The asyncio cluster client fixes its own connection class and keeps redis-py's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis
except ImportError:  # redis-py works without it; packing then stays in Python
    hiredis = None

__all__ = [
    "AsyncRedisClient",
    "ClientOptions",
    "KeyRun",
    "Reachability",
    "SyncRedisClient",
    "async_client",
    "gate",
    "is_cluster_url",
    "packs_key_runs",
    "sync_client",
]

SyncRedisClient = redis.Redis | redis.cluster.RedisCluster
AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Timeouts and retries of one kind of client."""

    socket_timeout_s: float
    """How long a reply may take before the command fails."""
    connect_timeout_s: float
    """How long a TCP connect may take."""
    retries: int
    """Retries of a failed command (connection errors and timeouts only)."""
    backoff_base_s: float
    """First backoff step; doubles each retry, with full jitter."""
    backoff_cap_s: float
    """Largest backoff step."""
    health_check_interval_s: float = 15.0
    """An idle connection older than this is PINGed before use."""
    max_connections: int = 64
    """Connection pool size (per node for a cluster)."""
    retry_timeouts: bool = True
    """Whether a command that timed out is sent again (connection errors always are)."""


SYNC_OPTIONS = ClientOptions(
    socket_timeout_s=10.0, connect_timeout_s=2.0, retries=3, backoff_base_s=0.05, backoff_cap_s=1.0
)
ASYNC_OPTIONS = ClientOptions(
    socket_timeout_s=0.5, connect_timeout_s=0.5, retries=1, backoff_base_s=0.01, backoff_cap_s=0.1,
    retry_timeouts=False,
)
"""The API's: a command that cannot be answered fails within 0.5 s (see the module docstring)."""
PROBE_OPTIONS = ClientOptions(
    socket_timeout_s=0.25, connect_timeout_s=0.25, retries=0, backoff_base_s=0.01, backoff_cap_s=0.1,
    max_connections=4, retry_timeouts=False,
)
"""The API's health polls: one try of each command; a poll not answered within 0.25 s in all is a failure
(``verifier/api/verdicts/index_view.py``)."""
BULK_OPTIONS = ClientOptions(
    socket_timeout_s=3.0, connect_timeout_s=0.5, retries=1, backoff_base_s=0.05, backoff_cap_s=0.5,
    max_connections=8, retry_timeouts=False,
)
"""The API worker's background writes that may wait on the store's fsync (the audit flush): off the
request path, bounded all the same."""
TOOL_OPTIONS = SYNC_OPTIONS
"""Operators' commands on an asyncio client (``api-keys``, ``audit``: exports and trims of a large
stream): patient, as the sync job's."""


class Reachability:
    """Whether a Redis server answered its last health poll (one per server, shared by its clients' pools).

    ``down`` is set by the poll that owns it; while set, the gated pools refuse to hand
    out connections (``ConnectionError`` at once): nothing waits on a server known not
    to answer."""

    __slots__ = ("down", "since", "failures")

    FAILURES_TO_CLOSE = 2
    """Failed polls in a row that close the gate: one late poll on a loaded machine does not."""

    def __init__(self) -> None:
        self.down: str | None = None
        """Why the server is taken for unreachable (None: the gate is open)."""
        self.since = 0.0
        """Monotonic time of the first failed poll of the current run of failures."""
        self.failures = 0

    def failed(self, why: str, now: float) -> bool:
        """Record a failed poll; True when this closes the gate."""
        if self.failures == 0:
            self.since = now
        self.failures += 1
        closes = self.down is None and self.failures >= self.FAILURES_TO_CLOSE
        if self.failures >= self.FAILURES_TO_CLOSE:
            self.down = why
        return closes

    def answered(self) -> bool:
        """Record an answered poll; True when this opens the gate."""
        opens = self.down is not None
        self.down = None
        self.failures = 0
        return opens


ALWAYS_UP = Reachability()
"""The gate of a pool nobody polls (it never closes)."""


class _GatedPool(redis.asyncio.ConnectionPool):
    """A connection pool that refuses at once while its :class:`Reachability` is down."""

    reachability: Reachability = ALWAYS_UP

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        down = self.reachability.down
        if down is not None:
            raise RedisConnectionError(f"redis did not answer its health poll ({down})")
        return await super().get_connection(*args, **kwargs)


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES


@dataclass(frozen=True, slots=True)
class _ClusterTarget:
    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    ssl: bool


def _parse_cluster_url(url: str) -> _ClusterTarget:
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        if ":" in credentials:
            user, pw = credentials.split(":", 1)
            username, password = unquote(user) or None, unquote(pw)
        else:
            password = unquote(credentials)
    nodes: list[tuple[str, int]] = []
    for item in netloc.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad node {item!r} in cluster URL: expected host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("a redis+cluster:// URL needs at least one host:port")
    query = parse_qs(parts.query)
    if query.get("db", ["0"])[0] not in ("0", "") or parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0")
    return _ClusterTarget(nodes, username, password, parts.scheme.lower() == "rediss+cluster")


def _common_kwargs(options: ClientOptions, url: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": options.socket_timeout_s,
        "socket_connect_timeout": options.connect_timeout_s,
        "health_check_interval": options.health_check_interval_s,
        "decode_responses": False,
    }
    if urlsplit(url).scheme.lower() != "unix":  # TCP only
        kwargs["socket_keepalive"] = True
    return kwargs


def _backoff(options: ClientOptions) -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=options.backoff_base_s, cap=options.backoff_cap_s)


def sync_client(url: str, options: ClientOptions = SYNC_OPTIONS, **overrides: Any) -> SyncRedisClient:
    """A sync client (``redis.Redis`` or ``redis.cluster.RedisCluster``) for ``url``."""
    kwargs = _common_kwargs(options, url) | overrides
    retry = redis.retry.Retry(_backoff(options), options.retries, supported_errors=_retried(options))
    if is_cluster_url(url):
        target = _parse_cluster_url(url)
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            retry=retry,
            max_connections=options.max_connections,
            **kwargs,
        )
    if hiredis is not None:
        kwargs.setdefault("command_packer", _SyncHiredisPacker())
    return redis.Redis.from_url(
        url, retry=retry, max_connections=options.max_connections, **kwargs
    )


class _SyncHiredisPacker:
    """The sync connections' packer: every argument straight to hiredis. redis-py's own
    ``HiredisRespSerializer`` first runs its Python encoder over each argument (~1 µs
    an argument: half of the client's time in an index APPLY of 1,000 events, ~11,000
    arguments); hiredis formats str, bytes, int and float as that encoder does. What
    hiredis refuses (bytearray, a bool, None, ...) goes to redis-py's serializer, which
    converts it or raises its DataError, as before."""

    __slots__ = ("_fallback",)

    def __init__(self) -> None:
        from redis.connection import HiredisRespSerializer, PythonRespSerializer
        from redis._parsers.encoders import Encoder

        encode = Encoder("utf-8", "strict", False).encode
        self._fallback = HiredisRespSerializer(PythonRespSerializer(6000, encode).pack, encode).pack

    def pack(self, *args: Any) -> list[bytes]:
        command = args[0]
        if isinstance(command, str):
            args = (*command.encode().split(), *args[1:])
        elif b" " in command:
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return self._fallback(*args)  # type: ignore[no-any-return]


def async_client(url: str, options: ClientOptions = ASYNC_OPTIONS, **overrides: Any) -> AsyncRedisClient:
    """An asyncio client (``redis.asyncio.Redis`` or its ``RedisCluster``) for ``url``.

    Create it inside the event loop that uses it (one per API worker).
    """
    kwargs = _common_kwargs(options, url) | overrides
    retry = redis.asyncio.retry.Retry(_backoff(options), options.retries, supported_errors=_retried(options))
    if is_cluster_url(url):
        target = _parse_cluster_url(url)
        return redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            retry=retry,
            max_connections=options.max_connections,
            **kwargs,
        )
    pool = _GatedPool.from_url(url, retry=retry, max_connections=options.max_connections, **kwargs)
    pool.connection_class = _hiredis_packing(pool.connection_class)
    client = redis.asyncio.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # as Redis.from_url does: the client owns its pool
    return client


def gate(client: AsyncRedisClient, reachability: Reachability) -> bool:
    """Let ``reachability`` gate ``client``'s pool (from :func:`async_client`); False for a client
    without a gated pool (a cluster client: its commands are bounded by their timeouts only)."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, _GatedPool):
        return False
    pool.reachability = reachability
    return True


def _retried(options: ClientOptions) -> tuple[type[BaseException], ...]:
    if options.retry_timeouts:
        return (RedisConnectionError, RedisTimeoutError, ConnectionResetError)
    return (RedisConnectionError, ConnectionResetError)


class _HiredisPacking:
    """Mixin for an asyncio connection class: ``pack_command`` as redis-py's sync
    ``HiredisRespSerializer`` does it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        if type(args[-1]) is KeyRun:
            return [_pack_key_run(args[:-1], args[-1])]
        if len(args) > _UNIFORM_RUN:
            packed = _pack_uniform_tail(args)
            if packed is not None:
                return [packed]
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


_UNIFORM_RUN = 64


class KeyRun:
    """The keys ``prefix + name`` for each of ``names``, as the last arguments of a command
    (``execute_command("MGET", other_key, KeyRun(prefix, names))``) on a client for which
    :func:`packs_key_runs` is true. Packed without making the keys: for same-length ASCII
    names the whole run is one join (a bulk look-up's 1,000 keys: ~10 µs instead of ~80 µs
    to build and pack them)."""

    __slots__ = ("prefix", "names")

    def __init__(self, prefix: str, names: Sequence[str]) -> None:
        self.prefix = prefix
        self.names = names

    def __iter__(self) -> Iterator[str]:
        prefix = self.prefix
        return (prefix + name for name in self.names)

    def __len__(self) -> int:
        return len(self.names)


def packs_key_runs(client: object) -> bool:
    """Whether ``client`` (from :func:`async_client`) takes a :class:`KeyRun` argument."""
    connection_class = getattr(getattr(client, "connection_pool", None), "connection_class", None)
    return isinstance(connection_class, type) and issubclass(connection_class, _HiredisPacking)


def _pack_key_run(head: tuple[Any, ...], run: KeyRun) -> bytes:
    names, prefix = run.names, run.prefix
    try:
        packed_head = hiredis.pack_command(head)
        if not names:
            keys = b""
        else:
            joined = "".join(names)
            size = len(names[0])
            if len(joined) == size * len(names) and max(map(len, names)) == size and joined.isascii() \
                    and prefix.isascii():
                bulk = "$%d\r\n%s" % (len(prefix) + size, prefix)
                keys = (bulk + ("\r\n" + bulk).join(names) + "\r\n").encode("ascii")
            else:
                packed_keys = hiredis.pack_command(tuple(run))
                keys = packed_keys[packed_keys.index(b"\r\n") + 2:]
    except TypeError as exc:
        raise DataError(str(exc)) from exc
    return b"".join((b"*%d\r\n" % (len(head) + len(names)), packed_head[packed_head.index(b"\r\n") + 2:], keys))


def _pack_uniform_tail(args: tuple[Any, ...]) -> bytes | None:
    """RESP for a command whose arguments after the first one or two are ASCII str of
    one length (a bulk MGET of permit keys): one join for the run, instead of
    hiredis' ~60 ns per argument (60 µs for 1,000 keys, against 6). None otherwise."""
    for start in (1, 2):
        run = args[start:]
        try:
            joined = "".join(run)
        except TypeError:
            continue
        size = len(run[0])
        # n lengths, none above size, summing to n * size: all equal to size
        if len(joined) != size * len(run) or max(map(len, run)) != size or not joined.isascii():
            continue
        try:
            head = hiredis.pack_command(args[:start])
        except TypeError as exc:
            raise DataError(str(exc)) from exc
        bulk = "$%d\r\n" % size
        return b"".join((
            b"*%d\r\n" % len(args),  # the count of all the arguments, not of the head's
            head[head.index(b"\r\n") + 2:],
            (bulk + ("\r\n" + bulk).join(run) + "\r\n").encode("ascii"),
        ))
    return None


_PACKING_CLASSES: dict[type, type] = {}


def _hiredis_packing(connection_class: type) -> type:
    if hiredis is None or issubclass(connection_class, _HiredisPacking):
        return connection_class
    packing = _PACKING_CLASSES.get(connection_class)
    if packing is None:
        packing = _PACKING_CLASSES[connection_class] = type(
            connection_class.__name__, (_HiredisPacking, connection_class), {"__module__": __name__}
        )
    return packing
