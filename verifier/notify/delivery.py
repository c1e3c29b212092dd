"""One HTTP attempt of one message: SSRF-checked, signed, bounded in time and size.

HTTP/1.1 by h11 (the sans-I/O parser that httpcore and uvicorn use) over asyncio
streams, with a keep-alive pool per (address, port, host name). Not httpx: on this
project's 2-core machine an httpx POST cost about 1.5 ms of CPU (its pool and anyio
layers), h11 on asyncio streams about 0.09 ms, and the notifier's target is 1,000
deliveries a second beside the sync job, the API and Redis (benchmarks/test_bench_notify.py).

- The connection goes to the address that was checked (``verifier.notify.urls``), with
  the host name as ``Host`` and as TLS SNI, the certificate checked against that name
  (the default context: system CAs, hostname checking). A pooled connection is reused
  only for the same name on the same address.
- No redirect is followed: a 3xx is a failure, as Standard Webhooks recommends.
- Connect and read timeouts; at most :data:`RESPONSE_CAP` bytes of the answer are read
  (the connection is then closed), the first :data:`EXCERPT_CHARS` kept for the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass

import h11

from .urls import AddressPolicy, Target, UrlRefused, check_url, resolve_target

__all__ = ["Attempt", "Deliverer", "RESPONSE_CAP"]

RESPONSE_CAP = 4096
EXCERPT_CHARS = 200
USER_AGENT = "permit-verifier-webhooks/1"
_RESOLVED_TTL_S = 30.0
_IDLE_KEPT = 16
"""Idle connections kept per (address, port, host name)."""
_IDLE_FOR_S = 30.0
_READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one attempt."""

    ok: bool
    status: int | None
    """The HTTP status (None: no answer)."""
    error: str
    """Why it failed, for the owner: the status, a timeout, a refused address ..."""
    duration_s: float
    retry_after_s: float | None = None
    gone: bool = False
    """410 Gone: the receiver wants no more (the endpoint is paused)."""
    excerpt: str = ""
    """The start of the answer's body."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the back-off decides


class _Connection:
    __slots__ = ("reader", "writer", "http", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Failed(Exception):
    def __init__(self, reason: str, fresh: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fresh = fresh
        """Failed on a new connection (a reused one may just have been closed by the server)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    retry_after: str | None
    excerpt: bytes


class Deliverer:
    def __init__(self, policy: AddressPolicy, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.policy = policy
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._tls = ssl.create_default_context()
        self._idle: OrderedDict[tuple[str, int, str, str], list[_Connection]] = OrderedDict()
        self._resolved: dict[str, tuple[float, Target]] = {}

    async def target(self, url: str) -> Target:
        """The checked address of ``url`` (cached a little while); :class:`UrlRefused`."""
        now = time.monotonic()
        cached = self._resolved.get(url)
        if cached is not None and now - cached[0] < _RESOLVED_TTL_S:
            return cached[1]
        target = await resolve_target(check_url(url), self.policy)
        if len(self._resolved) > 10_000:
            self._resolved.clear()
        self._resolved[url] = (now, target)
        return target

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> Attempt:
        started = time.perf_counter()
        try:
            target = await self.target(url)
        except UrlRefused as exc:
            return Attempt(False, None, f"refused: {exc}", time.perf_counter() - started)
        request = h11.Request(method="POST", target=target.url.path, headers=[
            ("Host", target.host_header), ("User-Agent", USER_AGENT), ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))), *headers.items()])
        answer: _Answer | None = None
        for _try in range(2):
            try:
                answer = await self._exchange(target, request, body)
                break
            except _Failed as failure:
                if failure.fresh:
                    return Attempt(False, None, failure.reason, time.perf_counter() - started)
                # a kept-alive connection the receiver had closed: once more on a new one
        duration = time.perf_counter() - started
        if answer is None:
            return Attempt(False, None, "connection failed (closed)", duration)
        text = answer.excerpt.decode("utf-8", "replace")[:EXCERPT_CHARS]
        status = answer.status
        if 200 <= status < 300:
            return Attempt(True, status, "", duration, excerpt=text)
        reason = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        return Attempt(False, status, reason, duration, retry_after_s=_retry_after(answer.retry_after),
                       gone=status == 410, excerpt=text)

    # -- connections ---------------------------------------------------------------------

    def _pool_key(self, target: Target) -> tuple[str, int, str, str]:
        return (str(target.address), target.url.port, target.url.scheme, target.url.host)

    async def _connect(self, target: Target) -> _Connection:
        tls = self._tls if target.url.scheme == "https" else None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                str(target.address), target.url.port, ssl=tls,
                server_hostname=target.url.host if tls is not None else None,
                limit=_READ_CHUNK), self.connect_timeout_s)
        except asyncio.TimeoutError:
            raise _Failed("timeout (connect)", True) from None
        except ssl.SSLError as exc:
            raise _Failed(f"TLS failed ({exc.reason or type(exc).__name__})", True) from None
        except OSError as exc:
            raise _Failed(f"connection failed ({exc.strerror or type(exc).__name__})", True) from None
        return _Connection(reader, writer)

    def _take(self, key: tuple[str, int, str, str]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < _IDLE_FOR_S and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    def _give_back(self, key: tuple[str, int, str, str], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        self._idle.move_to_end(key)
        if len(idle) >= _IDLE_KEPT:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)
        while len(self._idle) > 1024:  # many endpoints: forget the least recently used
            _old, dropped = self._idle.popitem(last=False)
            for old in dropped:
                old.close()

    async def _exchange(self, target: Target, request: h11.Request, body: bytes) -> _Answer:
        key = self._pool_key(target)
        connection = self._take(key)
        fresh = connection is None
        if connection is None:
            connection = await self._connect(target)
        http = connection.http
        reusable = False
        try:
            data = http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage())
            try:
                connection.writer.write(data)
                if connection.writer.transport.get_write_buffer_size():  # (asyncio.timeout: no task a call)
                    async with asyncio.timeout(self.read_timeout_s):
                        await connection.writer.drain()
            except asyncio.TimeoutError:
                raise _Failed("timeout (write)", True) from None
            except OSError as exc:
                raise _Failed(f"connection failed ({exc.strerror or type(exc).__name__})", fresh) from None
            deadline = time.monotonic() + self.read_timeout_s
            response: h11.Response | None = None
            excerpt = bytearray()
            got_any = False
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _Failed("timeout (read)", True)
                    try:
                        async with asyncio.timeout(left):
                            chunk = await connection.reader.read(_READ_CHUNK)
                    except asyncio.TimeoutError:
                        raise _Failed("timeout (read)", True) from None
                    except OSError as exc:
                        raise _Failed(f"connection failed ({exc.strerror or type(exc).__name__})",
                                      fresh or got_any) from None
                    if not chunk and not got_any and not fresh:
                        raise _Failed("connection failed (closed)", False)  # a stale kept-alive one
                    got_any = got_any or bool(chunk)
                    http.receive_data(chunk)
                    continue
                if isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    excerpt += event.data
                    if len(excerpt) >= RESPONSE_CAP:
                        break  # never read a receiver's answer past the cap (the connection goes)
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            if response is None:
                raise _Failed("connection failed (closed before an answer)", True)
            reusable = http.our_state is h11.DONE and http.their_state is h11.DONE
            retry_after = None
            for name, value in response.headers:
                if name == b"retry-after":
                    retry_after = value.decode("latin-1")
            return _Answer(response.status_code, retry_after, bytes(excerpt[:RESPONSE_CAP]))
        except h11.ProtocolError as exc:
            raise _Failed(f"invalid HTTP answer ({exc})"[:200], True) from None
        finally:
            if reusable:
                http.start_next_cycle()
                self._give_back(key, connection)
            else:
                connection.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, OrderedDict()
        for connections in idle.values():
            for connection in connections:
                connection.close()
