"""The one error of the stored-record codec, raised by both twins (stored.py)."""

from __future__ import annotations


class StoredRecordError(ValueError):
    """A stored permit record that neither layout accepts (truncated, trailing bytes, a
    wrong type, a value out of range, invalid UTF-8...), or a record the compact layout
    cannot hold (``encode_stored``): the index is corrupt, or the writer's input is."""
