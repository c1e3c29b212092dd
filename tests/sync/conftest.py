"""Fixtures of the sync suite: the simulator over HTTP, Redis from tests/support."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from verifier.upstream.server import UpstreamServer
from verifier.upstream.simulator import Upstream

from tests.upstream.support import simulator


@pytest.fixture
def sim() -> Iterator[tuple[Upstream, UpstreamServer, httpx.Client]]:
    """A 3,000-permit simulator on a free port, with an HTTP client on it."""
    with simulator(permits=3000, seed=21) as running:
        yield running
