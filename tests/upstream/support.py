"""Running the upstream simulator for real in tests: over HTTP on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import httpx

from verifier.upstream.server import UpstreamServer
from verifier.upstream.simulator import Upstream

AS_OF = dt.date(2026, 11, 1)
"""A fixed date for the seeded validity periods: the same data on any day the tests run."""


@contextlib.contextmanager
def simulator(permits: int = 2000, seed: int = 11, **options: object) -> Iterator[tuple[Upstream, UpstreamServer, httpx.Client]]:
    """(the simulator's state, its server, an HTTP client on it); stopped afterwards."""
    upstream = Upstream.create(permits=permits, seed=seed, as_of=AS_OF, **options)  # type: ignore[arg-type]
    with UpstreamServer(upstream) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield upstream, server, client
