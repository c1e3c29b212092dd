"""Upstream regressions: the upstream restored to an older state (versions went back).

The sync job finds one during a full resync, by comparing each snapshot record's
version with the live index's (:class:`RegressionCounter`). It does not switch such a
snapshot in by itself: it alerts (an ERROR log line, the ``regression`` field of its
status in ``GET /v1/admin/sync``, the ``pv_sync_upstream_regression`` metric) and waits
for the operator, the index going stale meanwhile (so the API answers
STATUS_UNAVAILABLE once the staleness bound has passed).

The operator accepts with ``verifier index accept-regression`` (or runs the sync job
with ``--accept-regression``). The sync job then keeps, for every permit that went
back, the version the index held before as that permit's *floor*
(``{pv}:regression:floors``, permit number -> version), and switches the older state in.
A code minted from a version above the index's record but at or below the floor was
minted from history the upstream no longer has: the API answers it SUPERSEDED
(``status.upstream_regressed``, get a new code) instead of STATUS_UNAVAILABLE
(``status.index_behind``) for good. Never VALID.

Keys (all under the namespace's hash tag): ``regression:pending`` (the regression
waiting for acceptance, JSON), ``regression:accept`` (the token the operator
accepted), ``regression:staged`` (permit -> former version, gathered during the
resync), ``regression:floors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from verifier.lib.redis_client import AsyncRedisClient, SyncRedisClient

from .keys import DEFAULT_NAMESPACE, KeyLayout, Pointer
from .records import PermitRecord
from .stored import stored_version

__all__ = [
    "Regression", "RegressionCounter", "accept_pending", "clear_pending", "floor_of", "read_acceptance",
    "read_pending", "regression_token", "write_pending",
]


class Regression(msgspec.Struct, kw_only=True):
    """An upstream regression found by the sync job (no permit numbers: counts only)."""

    detected_at: float
    """When it was found (epoch seconds)."""
    permits: int
    """Permits whose version in the upstream's snapshot is lower than in the index."""
    index_feed_id: str | None = None
    index_seq: int | None = None
    """The index's feed and cursor when it was found."""
    upstream_feed_id: str | None = None
    upstream_seq: int | None = None
    """The snapshot's feed and sequence number."""
    accepted_at: float | None = None
    """When the operator accepted it (None: waiting)."""


def _key(name: str, namespace: str) -> bytes:
    return f"{KeyLayout(namespace).tag}:regression:{name}".encode()


def regression_token(found: Regression) -> str:
    """Names what the operator accepts: this upstream state going back this far (a job
    restarted meanwhile finds the same token; an upstream that moved on needs a new yes)."""
    return f"{found.upstream_feed_id}:{found.upstream_seq}:{found.permits}:{found.index_feed_id}:{found.index_seq}"


class _Pending(msgspec.Struct):
    token: str
    regression: Regression


def write_pending(redis: SyncRedisClient, found: Regression, token: str, namespace: str = DEFAULT_NAMESPACE) -> None:
    redis.set(_key("pending", namespace), msgspec.json.encode(_Pending(token, found)))


def read_pending(redis: SyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> tuple[str, Regression] | None:
    raw = redis.get(_key("pending", namespace))
    if raw is None:
        return None
    try:
        pending = msgspec.json.decode(raw, type=_Pending)
    except msgspec.DecodeError:
        return None
    return pending.token, pending.regression


def accept_pending(redis: SyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> Regression | None:
    """The operator's acceptance of the regression waiting (None: none waits)."""
    pending = read_pending(redis, namespace)
    if pending is None:
        return None
    redis.set(_key("accept", namespace), pending[0].encode())
    return pending[1]


def read_acceptance(redis: SyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> str | None:
    raw = redis.get(_key("accept", namespace))
    return raw.decode() if raw is not None else None


def clear_pending(redis: SyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> None:
    redis.delete(_key("pending", namespace), _key("accept", namespace), _key("staged", namespace))


async def floor_of(redis: AsyncRedisClient, pn: str, namespace: str = DEFAULT_NAMESPACE) -> int | None:
    """The version ``pn`` had in the index before an accepted regression, if it went back."""
    raw = await redis.hget(_key("floors", namespace), pn)
    return int(raw) if raw is not None else None


class RegressionCounter:
    """Compares a snapshot, batch by batch, with the live generation (one MGET a batch)."""

    def __init__(self, writer: Any, live: Pointer, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.writer = writer
        self.redis: SyncRedisClient = writer.redis
        self.prefix = writer.keys.record_prefix(live.generation)
        self.namespace = namespace
        self.permits = 0
        self._staged = _key("staged", namespace)
        self.redis.delete(self._staged)

    def check(self, batch: Sequence[PermitRecord]) -> int:
        """Count (and stage the former versions of) the records of ``batch`` that went back."""
        if not batch:
            return 0
        held = self.writer._io(self.redis.execute_command, "MGET", *(self.prefix + r.pn.encode() for r in batch))
        staged: dict[str, int] = {}
        for record, raw in zip(batch, held):
            if raw is None:
                continue
            before = stored_version(raw)
            if record.v < before:
                staged[record.pn] = before
        if staged:
            self.permits += len(staged)
            self.writer._io(self.redis.hset, self._staged, mapping=staged)
        return len(staged)

    def store_floors(self) -> int:
        """Merge the staged former versions into the floors (the higher one stays)."""
        floors = _key("floors", self.namespace)
        moved = 0
        cursor = 0
        while True:
            cursor, chunk = self.redis.hscan(self._staged, cursor, count=1000)
            if chunk:
                names = list(chunk)
                current = self.redis.hmget(floors, names)
                mapping = {name: chunk[name] for name, old in zip(names, current)
                           if old is None or int(old) < int(chunk[name])}
                if mapping:
                    self.redis.hset(floors, mapping=mapping)
                moved += len(chunk)
            if cursor == 0:
                break
        return moved
