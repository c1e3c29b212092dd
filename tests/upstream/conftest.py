"""Fixtures of the upstream simulator's suite."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from verifier.upstream.server import UpstreamServer
from verifier.upstream.simulator import Upstream

from .support import simulator


@pytest.fixture
def sim() -> Iterator[tuple[Upstream, UpstreamServer, httpx.Client]]:
    """A 2,000-permit simulator on a free port, with an HTTP client."""
    with simulator() as running:
        yield running
