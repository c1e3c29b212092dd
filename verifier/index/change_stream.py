"""The change stream: every change the sync job applies, in order, for the notifier.

The index's APPLY script appends one entry per applied feed event to the Redis
Stream ``{<namespace>}:changelog`` (:attr:`KeyLayout.changelog`) in the same script
that writes the records and moves the cursor, and COMMIT appends a marker when a
full resync switches a generation in. So the stream holds exactly what the index
holds, in the order it came to hold it: a sync job killed at any instant leaves
neither a change without its entry nor an entry without its change, and a replayed
page appends nothing (its events are at or below the cursor). The stream shares the
index's hash tag (one slot on a Redis Cluster) and is trimmed to about
``change_stream_maxlen`` entries (``MAXLEN ~``): that bounds the notifications'
replay window. A FLUSHALL loses it with the index; the notifier notices the gap by
sequence number (:class:`ChangeEntry` carries the cursor range) and says so.

Entries (field names are one or two letters: a million entries are ~250 MB less
with short names). Every entry has ``k`` (kind) and ``f`` (the upstream feed id):

- a change, ``k`` = the feed event's type (``issue``, ``extend``, ``change``,
  ``cancel``, ``card_issued``, ``card_lost``, ``card_replaced``): ``s`` its sequence
  number, ``p`` the permit number, ``r`` the permit record after the change
  (msgpack, as the index stores it), ``t`` the upstream's event time (epoch s),
  ``pe`` the employer before the change when the change moved the permit to
  another one (else empty), ``c0`` the index cursor before the page it came in;
- ``k`` = ``cursor``: the page moved the cursor past its last change (events that
  the version guard turned into no-ops, or a page of no-ops): ``c0`` and ``c1``,
  the cursor before and after;
- ``k`` = ``switch``: a full resync switched generation ``g`` in at sequence ``s``:
  every change up to ``s`` is in that snapshot, none after it.

How a reader knows it saw everything: entries of one feed, read in order, chain
through the cursor. A change with ``c0`` above the last sequence number the reader
has covered, a ``switch`` to a sequence above it, or another feed id means changes
were applied that the reader never saw as entries (a resync folded them into a
snapshot, the stream was trimmed past them, or Redis lost its data).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from .records import EventType, PermitRecord
from .stored import decode_stored

__all__ = [
    "CURSOR_KIND",
    "SWITCH_KIND",
    "ChangeEntry",
    "decode_entry",
    "entry_millis",
]

CURSOR_KIND: Final = "cursor"
SWITCH_KIND: Final = "switch"


class ChangeEntry(msgspec.Struct, frozen=True):
    """One entry of the change stream, decoded."""

    id: str
    """The stream entry id (``<ms>-<n>``: the Redis server's time when it was applied)."""
    kind: EventType | Literal["cursor", "switch"]
    feed: str
    seq: int = 0
    """The change's (or the switch's) sequence number; 0 for a cursor entry."""
    pn: str = ""
    record: PermitRecord | None = None
    time: float = 0.0
    """The upstream's time of the change."""
    previous_employer: str = ""
    """Set when the change moved the permit from this employer to another."""
    cursor_before: int = 0
    """The index cursor before the page (changes and cursor entries)."""
    cursor_after: int = 0
    """Cursor entries: the cursor after the page."""
    generation: int = 0
    """Switch entries: the generation switched in."""

    @property
    def is_change(self) -> bool:
        return self.kind not in (CURSOR_KIND, SWITCH_KIND)


def _text(fields: dict[bytes, bytes], name: bytes) -> str:
    value = fields.get(name)
    return value.decode() if value else ""


def _int(fields: dict[bytes, bytes], name: bytes) -> int:
    value = fields.get(name)
    return int(value) if value else 0


def decode_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> ChangeEntry:
    """An entry as XREAD/XRANGE return it (binary client). Raises ValueError (or
    msgspec.DecodeError) for an entry that is not one of the shapes above."""
    ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    kind = _text(fields, b"k")
    feed = _text(fields, b"f")
    if kind == CURSOR_KIND:
        return ChangeEntry(ident, CURSOR_KIND, feed, cursor_before=_int(fields, b"c0"),
                           cursor_after=_int(fields, b"c1"))
    if kind == SWITCH_KIND:
        return ChangeEntry(ident, SWITCH_KIND, feed, seq=_int(fields, b"s"), generation=_int(fields, b"g"))
    raw = fields.get(b"r")
    if not kind or raw is None:
        raise ValueError(f"change stream entry {ident} has no kind or no record")
    # The record in the generation's stored layout; a compact one has no permit number
    # of its own: the entry's "p" names it.
    record = decode_stored(_text(fields, b"p"), raw)
    if not record.pn:
        raise ValueError(f"change stream entry {ident} names no permit")
    return ChangeEntry(ident, kind, feed, seq=_int(fields, b"s"), pn=record.pn, record=record,  # type: ignore[arg-type]
                       time=float(fields.get(b"t") or 0.0), previous_employer=_text(fields, b"pe"),
                       cursor_before=_int(fields, b"c0"))


def entry_millis(entry_id: bytes | str) -> int:
    """The millisecond part of a stream entry id."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])
