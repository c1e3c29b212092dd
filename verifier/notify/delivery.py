"""One HTTP attempt of one message: SSRF-checked, signed, bounded in time and size.

httpx, with: no redirects followed (a 3xx is a failure, as Standard Webhooks
recommends), no proxy or other settings from the environment, connect and read
timeouts, at most :data:`RESPONSE_CAP` bytes of the answer read (kept for the owner's
attempt log, cut to :data:`EXCERPT_CHARS`), and the connection made to the address
that was checked (``verifier.notify.urls``), the host name sent as ``Host`` and SNI.
Connections are pooled per host name, never shared between two names on one
address (a TLS session is only valid for the name it was checked for).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from .urls import AddressPolicy, Target, UrlRefused, check_url, resolve_target

__all__ = ["Attempt", "Deliverer", "RESPONSE_CAP"]

RESPONSE_CAP = 4096
EXCERPT_CHARS = 200
_RESOLVED_TTL_S = 30.0
_CLIENTS_KEPT = 256
USER_AGENT = "permit-verifier-webhooks/1"


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


class Deliverer:
    def __init__(self, policy: AddressPolicy, *, connect_timeout_s: float, read_timeout_s: float,
                 max_connections_per_host: int = 16) -> None:
        self.policy = policy
        self.timeout = httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=read_timeout_s,
                                     pool=connect_timeout_s + read_timeout_s)
        self.limits = httpx.Limits(max_connections=max_connections_per_host,
                                   max_keepalive_connections=max_connections_per_host)
        self._clients: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._resolved: dict[str, tuple[float, Target]] = {}

    def _client(self, host: str) -> httpx.AsyncClient:
        client = self._clients.get(host)
        if client is None:
            client = httpx.AsyncClient(timeout=self.timeout, limits=self.limits, follow_redirects=False,
                                       trust_env=False, headers={"User-Agent": USER_AGENT})
            self._clients[host] = client
            while len(self._clients) > _CLIENTS_KEPT:
                _old, dropped = self._clients.popitem(last=False)
                asyncio.get_running_loop().create_task(dropped.aclose())
        else:
            self._clients.move_to_end(host)
        return client

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
        request_headers = {**headers, "Host": target.host_header, "Content-Type": "application/json"}
        client = self._client(target.url.host)
        extensions = {"sni_hostname": target.url.host} if target.url.scheme == "https" else {}
        try:
            request = client.build_request("POST", target.connect_url, headers=request_headers, content=body,
                                           extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                excerpt = bytearray()
                async for chunk in response.aiter_raw():
                    excerpt += chunk
                    if len(excerpt) >= RESPONSE_CAP:
                        break  # never read a receiver's answer past the cap
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            return Attempt(False, None, f"timeout ({type(exc).__name__})", time.perf_counter() - started)
        except (httpx.HTTPError, OSError) as exc:
            return Attempt(False, None, f"connection failed ({type(exc).__name__})", time.perf_counter() - started)
        duration = time.perf_counter() - started
        status = response.status_code
        text = bytes(excerpt[:RESPONSE_CAP]).decode("utf-8", "replace")[:EXCERPT_CHARS]
        if 200 <= status < 300:
            return Attempt(True, status, "", duration, excerpt=text)
        reason = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        return Attempt(False, status, reason, duration, retry_after_s=_retry_after(response.headers.get("retry-after")),
                       gone=status == 410, excerpt=text)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()
