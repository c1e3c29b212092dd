"""Liveness and readiness answers."""

from __future__ import annotations

import msgspec

from verifier.api.verdicts.schemas import IndexAsOf


class LiveOut(msgspec.Struct):
    status: str = "live"


class ReadyChecks(msgspec.Struct):
    redis: bool
    """Redis answered a PING."""
    index: str
    """``fresh``, or why not: ``status.unavailable``, ``status.index_not_ready``, ``status.index_stale``."""
    trust_list: bool
    """A trust list is loaded."""
    store: bool
    """The store of record (API keys, audit) answered a PING. Not needed to be ready: verdicts come from
    the index, keys this worker has seen keep working for a while (and the audit waits in its files)."""


class ReadyOut(msgspec.Struct):
    ready: bool
    checks: ReadyChecks
    index_as_of: IndexAsOf | None
    lag_s: float | None
