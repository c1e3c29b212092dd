"""The sync overview: the index's own state, read now, and the sync job's report."""

from __future__ import annotations

from typing import Any

import msgspec

from verifier.api.admin.schemas import SyncOut
from verifier.api.verdicts.schemas import IndexAsOf
from verifier.api.verdicts.status import rfc3339
from verifier.index import IndexNotReady, IndexUnavailable
from verifier.index.sync_status import read_sync_status
from verifier.lib.problems import Problem
from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE


async def sync_overview(runtime: Any) -> SyncOut:
    try:
        freshness = await runtime.index.index.freshness()
    except (IndexUnavailable, IndexNotReady, *REDIS_UNAVAILABLE):
        raise Problem(503, "The index cannot be reached.", headers={"Retry-After": "1"}) from None
    report = await _sync_report(runtime.redis)
    return SyncOut(
        last_error=report.get("last_error") if report else None,
        lag_events=report.get("lag_events") if report else None,
        ready=freshness.ready,
        generation=freshness.generation,
        cursor=freshness.seq,
        index_as_of=IndexAsOf(seq=freshness.seq, time=rfc3339(freshness.as_of)) if freshness.as_of else None,
        lag_s=round(freshness.lag_s, 3) if freshness.lag_s is not None else None,
        count=freshness.count,
        sync=report,
    )


async def _sync_report(redis: AsyncRedisClient) -> dict[str, Any] | None:
    try:
        status = await read_sync_status(redis)
    except REDIS_UNAVAILABLE:
        return None
    if status is None:
        return None
    return with_rfc3339_times(msgspec.to_builtins(status))


def with_rfc3339_times(report: dict[str, Any]) -> dict[str, Any]:
    """The sync job's report with every instant (a ``*_at`` field, epoch seconds) as RFC 3339
    UTC, as every other time of the API, and its epoch seconds beside it as ``*_at_epoch``
    (0 or none: never happened, both null)."""
    out: dict[str, Any] = {}
    for name, value in report.items():
        if name.endswith("_at") and (value is None or isinstance(value, (int, float))) \
                and not isinstance(value, bool):
            known = value is not None and value > 0
            out[name] = rfc3339(value) if known else None
            out[name + "_epoch"] = value if known else None
        elif isinstance(value, dict):
            out[name] = with_rfc3339_times(value)
        else:
            out[name] = value
    return out


