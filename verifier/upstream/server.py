"""Run the simulator on uvicorn: in the foreground (the CLI) or in a thread (tests, demo)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from verifier.upstream.app import create_upstream_app
from verifier.upstream.simulator import Upstream


def _config(upstream: Upstream, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_upstream_app(upstream),
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through the process's one format (verifier.lib.logging)
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free one (never 6379: the OS does not hand it out
    unless asked, and we never ask)."""
    if port in (6379, 16379):
        raise ValueError("port 6379 is reserved for a foreign Redis")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def serve(upstream: Upstream, *, host: str = "127.0.0.1", port: int = 8080, log_level: str = "warning") -> None:
    """Serve until interrupted (the CLI)."""
    sock = bind(host, port)
    uvicorn.Server(_config(upstream, log_level)).run(sockets=[sock])


class UpstreamServer:
    """The simulator on a free port of 127.0.0.1 in a background thread.

    ``with UpstreamServer(upstream) as server: httpx.get(server.url + "/feed?after=0")``
    """

    def __init__(self, upstream: Upstream, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.upstream = upstream
        self._server = uvicorn.Server(_config(upstream, log_level))
        self._sock = bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> "UpstreamServer":
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="upstream-simulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the upstream simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "UpstreamServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(upstream: Upstream) -> Iterator[UpstreamServer]:
    with UpstreamServer(upstream) as server:
        yield server
