"""What can go wrong with the permit index, as exceptions the API and the sync job catch.

Every Redis failure surfaces as one of these, never as a redis-py exception, so that
callers have one small set to handle (DESIGN "Status is never guessed").
"""

from __future__ import annotations

__all__ = [
    "CursorMismatch",
    "GenerationChanged",
    "IndexUnavailable",
    "IndexNotReady",
    "PermitIndexError",
    "SnapshotAborted",
    "StaleFence",
]


class PermitIndexError(Exception):
    """Base of the index's exceptions."""


class IndexUnavailable(PermitIndexError):
    """Redis cannot be reached (connection refused, timeout, failover in progress).

    The API answers STATUS_UNAVAILABLE; the sync job backs off and retries.
    """


class IndexNotReady(PermitIndexError):
    """There is no complete index: the generation key is missing (a flushed or new
    Redis) or the first full load has not been committed yet.

    The API answers STATUS_UNAVAILABLE (never PERMIT_NOT_FOUND: an empty cache must not
    pass for an empty registry); the sync job starts a full resync.
    """


class StaleFence(PermitIndexError):
    """The fencing token is not the current leader's: this writer lost leadership
    (its lock expired, or another sync job took over). Stop writing; re-acquire."""


class CursorMismatch(PermitIndexError):
    """The index's cursor is not what the writer believed, in a way that would skip
    changes (``cursor_before`` ahead of the stored cursor: e.g. writes lost in a
    failover). Re-read :meth:`IndexWriter.state` and resume from ``stored``."""

    def __init__(self, message: str, *, stored: int | None) -> None:
        super().__init__(message)
        self.stored = stored


class GenerationChanged(PermitIndexError):
    """The live generation was switched or dropped under the writer (another leader
    committed a snapshot). Re-read the state."""


class SnapshotAborted(PermitIndexError):
    """The generation being loaded was dropped (aborted, or cleaned up by a newer leader)."""
