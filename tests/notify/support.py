"""Helpers of the notification tests: real HTTP receivers, a notifier in a thread or a
process, subscriptions made through the store, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from verifier.lib.redis_client import async_client
from verifier.lib.redis_server import free_port
from verifier.lib.settings import Settings
from verifier.notify.notifier import Notifier
from verifier.notify.store import NotifyStore, Owner, Subscription

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]

FAST = dict(notify_lease_ttl_s=2.0, notify_retry_base_s=0.1, notify_retry_cap_s=0.5, notify_partitions=4,
            reminder_scan_interval_s=3600.0)
"""Settings that make takeovers and retries happen within a second or two."""


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def run_store(url: str, fn: Callable[[NotifyStore], Awaitable[T]]) -> T:
    """``fn(NotifyStore)`` on a client of its own, in a loop of its own."""
    async def main() -> T:
        client = async_client(url)
        try:
            return await fn(NotifyStore(client))
        finally:
            await client.aclose()

    return asyncio.run(main())


def subscribe(store_url: str, url: str, events: tuple[str, ...] = ("*",), *, role: str = "admin",
              key_id: str = "k0000000000a", employers: tuple[str, ...] = (),
              fields: tuple[str, ...] = ("pn", "status", "cat", "emp", "vf", "vt")) -> Subscription:
    owner = Owner(key_id=key_id, role=role, employers=employers, fields=fields)
    return run_store(store_url, lambda s: s.create(owner, url, events))


def live_key(redis_sync: Any, key_id: str = "k0000000000a", role: str = "admin") -> None:
    """An API key record as verifier.api.auth.keys writes it (the notifier checks revocation)."""
    redis_sync.hset(f"pv:apikey:{key_id}", mapping={"role": role, "revoked": ""})


@dataclass
class Delivery:
    arrived: float
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Inbox:
    """A receiver's recorded deliveries and what it answers (``answer(n)`` for the n-th request:
    (status, seconds to wait first))."""

    deliveries: list[Delivery] = field(default_factory=list)
    answer: Callable[[int], tuple[int, float]] = lambda n: (204, 0.0)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-request (killed): nothing was received
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self.lock:
            number = self.requests
            self.requests += 1
        status, wait_s = self.answer(number)
        if wait_s:
            await asyncio.sleep(wait_s)
        if 200 <= status < 300:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            with self.lock:
                self.deliveries.append(Delivery(time.time(), headers, body))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def payloads(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d.payload for d in self.deliveries]

    def ids(self) -> set[str]:
        with self.lock:
            return {d.id for d in self.deliveries}


@contextlib.contextmanager
def receiver(inbox: Inbox | None = None, path: str = "/hook") -> Iterator[tuple[str, Inbox]]:
    """A real HTTP server (uvicorn) on a free loopback port, in a thread."""
    inbox = inbox or Inbox()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(inbox, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="test-receiver", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the receiver to start")
    try:
        yield f"http://127.0.0.1:{port}{path}", inbox
    finally:
        server.should_exit = True
        thread.join(10)


class NotifierThread:
    """A Notifier with its own event loop in a thread; ``stop()`` is a clean stop."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.settings = settings
        self.options = options
        self.notifier: Notifier | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="test-notifier", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.notifier = Notifier(self.settings, **self.options)
            await self.notifier.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self._errors.append(exc)

    def __enter__(self) -> "NotifierThread":
        self._thread.start()
        wait_for(lambda: self.notifier is not None and self.notifier.ready.is_set(), 20, "the notifier to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the notifier did not stop"
        assert not self._errors, self._errors


class NotifyProcess:
    """``verifier notify`` as a child process (so that it can be killed with -9)."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()/terminate()
        env = {**os.environ, **settings.to_env(), "VERIFIER_LOG_LEVEL": "INFO"}
        self.process = subprocess.Popen([sys.executable, "-m", "verifier", "notify"], cwd=REPO, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code
