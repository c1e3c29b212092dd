"""Fixtures of the API tests: a real Redis, a real index, real signed codes, the real app.

- ``world``: a Redis (from ``tests.support.redis_fixtures``) holding a trust list
  (issuer key ``issuer``), a permit index loaded through ``IndexWriter`` with the
  permits of :data:`PERMITS`, and one API key per role (``world.token[role]``;
  the partner key is bound to :data:`EMPLOYER_A`).
- ``client``: Litestar's ``TestClient`` around ``create_app(settings)``: the app
  runs in-process with its lifespan, background tasks and Redis (the HTTP layer is
  Litestar's own; nothing is mocked).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from litestar.testing import TestClient

from verifier.api.app import create_app
from verifier.api.auth.keys import add_api_key
from verifier.index import Card, ChangeEvent, IndexWriter, PermitRecord
from verifier.index.trust_store import save_trust_list_sync
from verifier.issuing import IssuerKey, mint_es1, mint_wp1
from verifier.issuing.keys import trust_list
from verifier.lib.redis_client import TOOL_OPTIONS, async_client
from verifier.lib.settings import Settings

T = TypeVar("T")

ISSUER = "CN-110000"
EMPLOYER_A = "91110000100000000A"
EMPLOYER_B = "91310000200000000B"
ROLES = ("exit_entry", "service_hall", "social_insurance", "partner", "admin", "essc_platform")
_CST = dt.timezone(dt.timedelta(hours=8))


def cst_date(days_from_today: int) -> str:
    return (dt.datetime.now(_CST).date() + dt.timedelta(days=days_from_today)).isoformat()


def record(pn: str, **changes: Any) -> PermitRecord:
    """A permit valid from a year ago to a year ahead, with an active card ``C<pn>``."""
    fields: dict[str, Any] = {
        "pn": pn, "n": "SMITH JOHN", "nat": "GBR", "dob": "1985-04-12", "cat": "B", "emp": EMPLOYER_A,
        "vf": cst_date(-365), "vt": cst_date(365), "v": 1, "status": "active",
        "ssn": "9" + pn[-8:].rjust(8, "0"), "cards": (Card("C" + pn, "active"),),
    }
    fields.update(changes)
    return PermitRecord(**fields)


# The permits every API test starts with, by what they are for.
PERMITS: dict[str, PermitRecord] = {
    "valid": record("WP1100002020000001"),
    "cancelled": record("WP1100002020000002", status="cancelled", v=2),
    "expired": record("WP1100002020000003", vf=cst_date(-800), vt=cst_date(-1)),
    "superseded": record("WP1100002020000004", v=3),
    "card_lost": record("WP1100002020000005", v=2, cards=(Card("CWP1100002020000005", "lost"),
                                                          Card("CNEW0000000000005", "active"))),
    "card_replaced": record("WP1100002020000006", v=2, cards=(Card("CWP1100002020000006", "replaced"),
                                                              Card("CNEW0000000000006", "active"))),
    "other_employer": record("WP3100002020000007", emp=EMPLOYER_B, n="DUPONT MARIE", nat="FRA"),
    "ends_today": record("WP1100002020000008", vt=cst_date(0)),
    "no_card": record("WP1100002020000009", cards=(), ssn=None),
}
NOT_IN_INDEX = record("WP1100002020999999")


def run_async(redis_url: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(async redis client)`` to completion in a loop of its own."""
    async def main() -> T:
        client = async_client(redis_url, TOOL_OPTIONS)  # a tool's client: not the API's fail-fast timeouts
        try:
            return await fn(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


class IndexHelper:
    """Writes the permit index as the sync job does (IndexWriter, fenced)."""

    def __init__(self, redis_sync: Any) -> None:
        self.writer = IndexWriter(redis_sync)
        fence = self.writer.acquire_leadership("api-tests", ttl_s=600)
        assert fence is not None
        self.fence = fence
        self.seq = 0

    def load(self, records: list[PermitRecord], seq: int = 100) -> None:
        load = self.writer.begin_snapshot(self.fence, expected_count=len(records))
        load.add(records)
        load.commit(seq, "api-tests-feed", upstream_time=time.time())
        self.seq = seq
        self.heartbeat()

    def change(self, permit: PermitRecord, kind: str = "change") -> None:
        self.seq += 1
        event = ChangeEvent(seq=self.seq, time=time.time(), type=kind, permit=permit)  # type: ignore[arg-type]
        self.writer.apply_page([event], cursor_before=self.seq - 1, fence=self.fence)
        self.heartbeat()

    def heartbeat(self) -> None:
        self.writer.heartbeat(self.seq, time.time(), self.fence)


@dataclass
class World:
    redis_url: str
    redis_sync: Any
    issuer: IssuerKey
    revoked: IssuerKey
    """A key of the trust list with status ``revoked``."""
    index: IndexHelper
    state_dir: Path
    """The workers' state folder (their audit files are in ``state_dir/audit``)."""
    store_url: str = ""
    """The store of record (API keys, audit); empty: the index's Redis (``redis_url``)."""
    token: dict[str, str] = field(default_factory=dict)
    key_id: dict[str, str] = field(default_factory=dict)

    def settings(self, **changes: Any) -> Settings:
        base: dict[str, Any] = {"redis_url": self.redis_url, "store_url": self.store_url, "state_dir": self.state_dir,
                                "rate_limit_per_s": 100_000.0, "rate_limit_burst": 100_000}
        base.update(changes)
        return Settings(**base)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token[role]}"}

    def wp1(self, permit: PermitRecord, *, key: IssuerKey | None = None, **kwargs: Any) -> str:
        kwargs.setdefault("iat", int(time.time()) - 60)
        return mint_wp1(key or self.issuer, permit, **kwargs)

    def es1(self, permit: PermitRecord, *, key: IssuerKey | None = None, **kwargs: Any) -> str:
        kwargs.setdefault("iat", int(time.time()) - 5)
        return mint_es1(key or self.issuer, permit, **kwargs)

    @property
    def store(self) -> str:
        """The URL of the store of record."""
        return self.store_url or self.redis_url

    def add_key(self, role: str, name: str, employers: tuple[str, ...] = (), **kwargs: Any) -> tuple[str, str]:
        return run_async(self.store, lambda r: add_api_key(r, role, name, employers, **kwargs))

    def store_trust_list(self, *keys: IssuerKey) -> None:
        data = orjson.dumps(trust_list(keys or (self.issuer, self.revoked)))
        save_trust_list_sync(self.redis_sync, data)


@pytest.fixture
def issuer() -> IssuerKey:
    return IssuerKey.generate([ISSUER, "CN-310000"])


def make_world(redis_url: str, redis_sync: Any, issuer: IssuerKey, state_dir: Path, store_url: str = "") -> World:
    """Trust list and index in the Redis at ``redis_url``, keys in the store of record (``store_url``, or the same)."""
    world = World(redis_url=redis_url, redis_sync=redis_sync, issuer=issuer,
                  revoked=IssuerKey.generate([ISSUER], status="revoked"), index=IndexHelper(redis_sync),
                  state_dir=state_dir, store_url=store_url)
    world.store_trust_list()
    world.index.load(list(PERMITS.values()))
    for role in ROLES:
        employers = (EMPLOYER_A,) if role == "partner" else ()
        world.key_id[role], world.token[role] = world.add_key(role, f"test {role}", employers)
    return world


@pytest.fixture
def world(redis_url: str, redis_sync: Any, issuer: IssuerKey, tmp_path: Path) -> World:
    return make_world(redis_url, redis_sync, issuer, tmp_path / "state")


def wait_until(predicate: Callable[[], Any], timeout_s: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def open_client(settings: Settings) -> TestClient[Any]:
    """A started TestClient whose worker is subscribed to the change and revocation channels."""
    client = TestClient(create_app(settings), raise_server_exceptions=True)
    client.__enter__()
    runtime = client.app.state.runtime
    wait_until(lambda: runtime.subscribed.is_set(), what="the change subscription")
    wait_until(lambda: runtime.store_subscribed.is_set(), what="the revocation subscription")
    return client


@pytest.fixture
def client(world: World) -> Iterator[TestClient[Any]]:
    client = open_client(world.settings())
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


@pytest.fixture
def servers(world: World, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``start(workers, **settings)``: `verifier serve` on the world's Redis, ready; all stopped after the test."""
    from tests.api.servers import Server

    started: list[Server] = []

    def start(workers: int, **settings: Any) -> Server:
        server = Server(world, workers, tmp_path / f"server-{len(started)}.log", **settings)
        started.append(server)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
