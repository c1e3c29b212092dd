"""The sync job's status, as it writes it to Redis and the API reads it back.

The API must not import ``verifier.sync`` (DESIGN "Which part may use which"); both
meet here, in the index module. The leading sync job writes a :class:`SyncStatus`
as JSON under ``{<namespace>}:sync:status`` (``{pv}:sync:status`` by default)
after every poll of the feed (at most a few times a second) and at every change of
state; ``GET /v1/admin/sync`` and the metrics read it with :func:`read_sync_status`
(asyncio client) or :func:`read_sync_status_sync`.

The status is informative: the API's freshness decisions rest on the index's own
heartbeat (``as_of`` in the generation's metadata), not on this document. Judge
its age by ``updated_at``: a sync job that died stops updating it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from verifier.lib.redis_client import AsyncRedisClient, SyncRedisClient

from .keys import DEFAULT_NAMESPACE, KeyLayout
from .regression import Regression

__all__ = ["SyncStatus", "read_sync_status", "read_sync_status_sync", "status_key", "write_sync_status"]

SyncRole = Literal["leader", "standby", "stopped"]
SyncState = Literal["starting", "waiting", "resyncing", "following", "failing", "regressed", "stopped"]


class SyncStatus(msgspec.Struct, kw_only=True, omit_defaults=False):
    """What the sync job is doing and how far behind the upstream the index is."""

    instance: str
    """Which sync process wrote this (host:pid:random)."""
    role: SyncRole
    """leader (writes the index), standby (waits for the lock), stopped (shut down cleanly)."""
    state: SyncState
    """starting, waiting (standby), resyncing (loading a snapshot), following (the
    feed), failing (retrying after an error), stopped."""
    fence: int | None = None
    """The leader's fencing token."""
    feed_id: str | None = None
    """The upstream feed the index follows."""
    cursor: int | None = None
    """The last feed sequence number applied to the index."""
    head_seq: int | None = None
    """The feed's head at the last poll."""
    lag_events: int | None = None
    """head_seq - cursor at the last poll."""
    lag_s: float | None = None
    """Age (upstream clock) of the oldest change the index did not have at the last
    poll; 0 when it had them all."""
    generation: int | None = None
    """The live index generation."""
    last_poll_at: float | None = None
    """When the feed was last read successfully (epoch seconds)."""
    caught_up_at: float | None = None
    """When the index last held every change the feed had (epoch seconds)."""
    last_error: str | None = None
    """The last failure (upstream or Redis), without personal data; None after recovery."""
    last_error_at: float | None = None
    errors: int = 0
    """Failures since the process started."""
    events_applied: int = 0
    """Records replaced by feed events since the process started."""
    resyncs: int = 0
    """Full resyncs completed since the process started."""
    resync_reason: str | None = None
    """Why the last (or current) full resync was needed."""
    resync_loaded: int | None = None
    """Records loaded so far by the running full resync."""
    resync_total: int | None = None
    """Records the running full resync's snapshot holds."""
    resync_resumed_from: int | None = None
    """The running (or last) resync took over a dead leader's load at this record (None: began anew)."""
    regression: Regression | None = None
    """The last upstream regression found (versions went back): waiting for the operator's
    acceptance while ``accepted_at`` is None (state ``regressed``). See verifier.index.regression."""
    started_at: float = 0.0
    updated_at: float = 0.0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SyncStatus)


def status_key(namespace: str = DEFAULT_NAMESPACE) -> bytes:
    return KeyLayout(namespace).tag.encode() + b":sync:status"


def encode_status(status: SyncStatus) -> bytes:
    return _encoder.encode(status)


def decode_status(data: bytes | None) -> SyncStatus | None:
    """The stored status, or None when absent or unreadable (never raises on bad data)."""
    if data is None:
        return None
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return None


def write_sync_status(redis: SyncRedisClient, status: SyncStatus, namespace: str = DEFAULT_NAMESPACE) -> None:
    """Store the status (sync client)."""
    redis.set(status_key(namespace), encode_status(status))


def read_sync_status_sync(redis: SyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> SyncStatus | None:
    return decode_status(redis.get(status_key(namespace)))


async def read_sync_status(redis: AsyncRedisClient, namespace: str = DEFAULT_NAMESPACE) -> SyncStatus | None:
    """The status the sync job wrote last (asyncio client), or None."""
    return decode_status(await redis.get(status_key(namespace)))
