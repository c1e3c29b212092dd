"""Fixtures of the status-list suite: the simulator over HTTP, the sync job and the writer in
threads, against a real Redis (tests/support)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from verifier.index.status_lists import CARDS, PERMITS, load_published_sync
from verifier.lib.settings import Settings
from verifier.status_lists.writer import StatusListWriter
from verifier.upstream.server import UpstreamServer
from verifier.upstream.simulator import Upstream

from tests.sync.support import settings_for, sync_thread, wait_caught_up, wait_for
from tests.upstream.support import simulator

from .decoder import Read, read_token

BASE = "https://pv.example/v1/status-lists"


@contextlib.contextmanager
def writer_thread(settings: Settings, **options: Any) -> Iterator[StatusListWriter]:
    """The status-list writer as a library function in a thread; stopped cleanly afterwards."""
    stop = threading.Event()
    options.setdefault("lock_ttl_s", 1.0)
    writer = StatusListWriter(settings, stop, **options)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            writer.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, name="status-lists", daemon=True)
    thread.start()
    try:
        yield writer
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the writer did not stop"
    assert not errors, errors


def published(redis_client: Any, name: str) -> Read | None:
    held = load_published_sync(redis_client, name)
    return read_token(held.token) if held is not None else None


def list_settings(redis_url: str, upstream_url: str, **overrides: Any) -> Settings:
    return settings_for(redis_url, upstream_url, status_list_base_url=BASE, status_list_ttl_s=1,
                        status_list_lifetime_s=30).with_(**overrides)


class Stack:
    """A simulator, the sync job following it and a writer publishing from the index."""

    def __init__(self, upstream: Upstream, server: UpstreamServer, client: httpx.Client, redis_client: Any,
                 settings: Settings, writer: StatusListWriter) -> None:
        self.upstream, self.server, self.client = upstream, server, client
        self.redis, self.settings, self.writer = redis_client, settings, writer

    def lists_show(self, check: Any, what: str, timeout: float = 30) -> tuple[Read, Read]:
        """Wait until ``check(permits, cards)`` holds for the lists as published."""
        def both() -> Any:
            permits, cards = published(self.redis, PERMITS), published(self.redis, CARDS)
            return (permits, cards) if permits is not None and cards is not None and check(permits, cards) \
                else None
        return wait_for(both, timeout, what)  # type: ignore[no-any-return]


@pytest.fixture
def stack(redis_url: str, redis_sync: Any) -> Iterator[Stack]:
    with simulator(permits=800, seed=31, status_list_base=BASE) as (upstream, server, client):
        settings = list_settings(redis_url, server.url)
        with sync_thread(settings), writer_thread(settings) as writer:
            wait_caught_up(upstream, redis_sync)
            yield Stack(upstream, server, client, redis_sync, settings, writer)
