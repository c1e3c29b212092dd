"""The sync job's state, for operators."""

from __future__ import annotations

from typing import Any

import msgspec

from verifier.api.verdicts.schemas import IndexAsOf


class SyncOut(msgspec.Struct):
    ready: bool
    """A complete index is live."""
    generation: int | None
    """The live index generation (changes with every full resync)."""
    cursor: int | None
    """The last upstream change-feed sequence applied."""
    index_as_of: IndexAsOf | None
    lag_s: float | None
    """Seconds since the sync job last confirmed the index."""
    count: int | None
    """Permits in the index."""
    last_error: str | None
    """The sync job's last failure (None after it recovered, or when it has not reported)."""
    lag_events: int | None
    """Feed events the index lacked at the sync job's last poll."""
    sync: dict[str, Any] | None
    """What the sync job reports about itself (lag in events, last error, leader), when it has reported."""
