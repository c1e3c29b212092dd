"""The sync job's status shape; it lives in :mod:`verifier.index.sync_status` so that the
API can read it without importing the sync job."""

from verifier.index.sync_status import SyncStatus, read_sync_status, read_sync_status_sync, write_sync_status

__all__ = ["SyncStatus", "read_sync_status", "read_sync_status_sync", "write_sync_status"]
