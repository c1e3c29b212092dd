"""Fixtures of the offline suite: the whole service for real (simulator, sync job, status-list
writer, the API on uvicorn), each in a thread on a free port of 127.0.0.1, and a plain HTTP
server that answers what a test wants (a service gone wrong: it is a real server too)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from verifier.api.app import create_app
from verifier.api.auth.keys import add_api_key
from verifier.index.records import PermitRecord
from verifier.index.status_lists import PATH
from verifier.lib.redis_client import async_client
from verifier.lib.settings import Settings
from verifier.upstream.server import UpstreamServer, bind
from verifier.upstream.simulator import Upstream

from tests.status_lists.conftest import writer_thread
from tests.sync.support import settings_for, sync_thread, wait_caught_up, wait_for


class ThreadedApi:
    """``create_app(settings)`` on uvicorn in a thread (one worker), on a socket bound beforehand."""

    def __init__(self, settings: Settings, sock: Any) -> None:
        self._sock = sock
        self._server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                                                     lifespan="on", timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="api",
                                        daemon=True)

    def __enter__(self) -> "ThreadedApi":
        self._thread.start()
        wait_for(lambda: self._server.started, 20, "the API to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()


@dataclass
class Service:
    url: str
    upstream: Upstream
    upstream_url: str
    redis: Any
    token: str
    """An exit_entry API key."""

    def permit(self, want: Callable[[PermitRecord], bool]) -> PermitRecord:
        today = time.strftime("%Y-%m-%d")
        return next(r for r in self.upstream.records() if r.vf <= today < r.vt and want(r))

    def card_read(self, record: PermitRecord, cn: str | None = None) -> dict[str, str]:
        """A card read file's content for a card of ``record`` (the simulator's software card)."""
        cn, certificate, _ = self.upstream.mint_card(record.pn, cn=cn)
        challenge = bytes(range(32))
        signature = self.upstream.card(cn).sign_challenge(challenge)
        encode = base64.b64encode
        return {"certificate": encode(certificate).decode(), "challenge": encode(challenge).decode(),
                "signature": encode(signature).decode()}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The whole service, once for the module (Redis of its own: tests here never flush it)."""
    from verifier.lib.redis_server import EmbeddedRedis
    from verifier.lib.redis_client import sync_client

    server = EmbeddedRedis(tmp_path_factory.mktemp("offline-redis"), persist=False)
    server.start()
    sock = bind()
    api_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    upstream = Upstream.create(permits=600, seed=41, status_list_base=api_url + PATH)  # validity around today
    redis_sync = sync_client(server.url)
    try:
        with UpstreamServer(upstream) as simulator:
            settings = settings_for(server.url, simulator.url, status_list_base_url=api_url + PATH,
                                    status_list_ttl_s=2, status_list_lifetime_s=120, rate_limit_per_s=10_000.0,
                                    rate_limit_burst=10_000)
            with sync_thread(settings), writer_thread(settings) as writer, ThreadedApi(settings, sock):
                wait_caught_up(upstream, redis_sync)
                wait_for(lambda: writer.counts.published >= 2, 30, "the lists published")
                wait_for(lambda: httpx.get(api_url + "/health/ready").status_code == 200, 30, "the API ready")
                wait_for(lambda: any(k.get("use") == "status" for k in httpx.get(api_url + "/v1/trust-list")
                                     .json()["keys"]), 30, "the list signers in the trust list")
                _, token = asyncio.run(_key(server.url))
                yield Service(api_url, upstream, simulator.url, redis_sync, token)
    finally:
        redis_sync.close()
        server.stop()


async def _key(url: str) -> tuple[str, str]:
    redis = async_client(url)
    try:
        return await add_api_key(redis, "exit_entry", "offline tests")
    finally:
        await redis.aclose()


@dataclass
class Answer:
    status: int = 200
    content_type: str = "application/json"
    body: bytes = b""
    stall_s: float = 0.0


@dataclass
class FakeService:
    """A real HTTP server answering ``answers[path]`` (404 for any other path)."""

    answers: dict[str, Answer] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def fake_service() -> Iterator[FakeService]:
    fake = FakeService()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            fake.seen.append(self.path)
            answer = fake.answers.get(self.path, Answer(404, "text/plain", b"no"))
            if answer.stall_s:
                time.sleep(answer.stall_s)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(answer.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-service", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def bundle_bytes(directory: Path) -> bytes | None:
    path = directory / "offline-bundle.json"
    return path.read_bytes() if path.exists() else None
