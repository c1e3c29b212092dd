"""One page of the change feed, planned before it is written.

:meth:`IndexWriter.apply_page <verifier.index.writer.IndexWriter.apply_page>` reads
what the page touches (the cursor, the leader lock, the records of its permits),
plans the page here without Redis (:func:`plan_page`: which events are replays,
which the version guard turns into no-ops, the records to write, the secondary
look-ups to change), builds the APPLY script's arguments by name
(:func:`apply_call`, :class:`ApplyArgs`), then runs the script, which checks the
same facts again atomically before its first write, and appends each applied
change to the change stream (:mod:`verifier.index.change_stream`) in the same step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .changes import ChangeMessage, encode_change
from .keys import KeyLayout, Pointer, bucket_of, lookup_field
from .records import ChangeEvent, PermitRecord, check_identifiers, encode_record
from .stored import encode_stored

__all__ = ["ApplyArgs", "LookupChange", "PagePlan", "apply_call", "check_identifiers", "page_permits", "plan_page"]

V_INDEX = PermitRecord.__struct_fields__.index("v") + 1
"""Position of ``v`` in the msgpack array of a PermitRecord (1-based, for Lua)."""

DEFAULT_STREAM_MAXLEN = 200_000
"""Entries the change stream keeps by default (``Settings.change_stream_maxlen``)."""

# Kinds of secondary look-up in a mapping change.
SSN = b"s"
CN = b"c"

class LookupChange(NamedTuple):
    """One secondary look-up entry to add or remove."""

    op: bytes
    """``b"+"`` (add the permit to the id's entry) or ``b"-"`` (remove it)."""
    kind: bytes
    """:data:`SSN` or :data:`CN`."""
    ident: str
    pn: str


def _mapping_changes(pn: str, old: PermitRecord | None, new: PermitRecord) -> list[LookupChange]:
    """The secondary look-ups of one changed permit: ids the new record gained are
    added, ids it lost are removed; most events (an extension, a new employer, a
    cancellation) touch neither. The diff is exact because the page is planned on the
    records read under the cursor the script then checks. Cards stay in a record when
    lost or replaced, so an old card number keeps resolving to the permit (with its
    card status).
    """
    if old is not None and old.ssn == new.ssn and old.cards == new.cards:
        return []  # the common case (an extension, a new employer, a cancellation): no set to build
    ops: list[LookupChange] = []
    old_ssn = old.ssn if old is not None else None
    old_cns = {c.cn for c in old.cards} if old is not None else set()
    new_cns = {c.cn for c in new.cards}
    if old_ssn and old_ssn != new.ssn:
        ops.append(LookupChange(b"-", SSN, old_ssn, pn))
    for cn in sorted(old_cns - new_cns):
        ops.append(LookupChange(b"-", CN, cn, pn))
    if new.ssn and new.ssn != old_ssn:
        ops.append(LookupChange(b"+", SSN, new.ssn, pn))
    for cn in sorted(new_cns - old_cns):
        ops.append(LookupChange(b"+", CN, cn, pn))
    return ops


def page_permits(events: Sequence[ChangeEvent]) -> list[str]:
    """The permit numbers a page touches, each once, in the order they first appear."""
    return list(dict.fromkeys(e.permit.pn for e in events))


@dataclass(frozen=True, slots=True)
class PagePlan:
    """What applying a page does to an index whose cursor is ``stored_cursor``."""

    stored_cursor: int
    cursor: int
    """The cursor after the page: its highest ``seq`` above the stored one."""
    applied: int
    """Events whose record replaces the held one."""
    unchanged: int
    """Events above the cursor that the version guard turns into no-ops (v not higher)."""
    duplicates: int
    """Events at or below the cursor (already applied): no-ops."""
    changed: list[str]
    """Permit numbers whose record changes, in page order."""
    held: Mapping[str, PermitRecord | None]
    """The records as read before the page (None: no such permit yet)."""
    written: Mapping[str, PermitRecord]
    """The new record of each changed permit."""
    lookups: list[LookupChange]
    applied_events: list[tuple[ChangeEvent, PermitRecord | None]] = dataclasses.field(default_factory=list)
    """The events that replaced a record, in seq order, each with the record it replaced
    (None: a new permit): the change stream's entries."""

    @property
    def writes_nothing(self) -> bool:
        """Neither the cursor nor a record moves: no script to run."""
        return self.cursor == self.stored_cursor and not self.changed

    @property
    def added(self) -> int:
        """Permits new to the index (the count's delta)."""
        return sum(self.held[pn] is None for pn in self.changed)


def plan_page(events: Sequence[ChangeEvent], stored_cursor: int,
              held: Mapping[str, PermitRecord | None]) -> PagePlan:
    """Plan ``events`` on the index's cursor and the records it holds for the page's
    permits (``held``: one entry per :func:`page_permits`). Pure: no Redis.

    Events at or below the cursor are no-ops (a replayed page is harmless); a record
    replaces the held one only when its ``v`` is higher (the version guard); events
    are taken in ``seq`` order, so several versions of one permit in a page end with
    the highest. Raises ValueError for an identifier the index cannot store.
    """
    for event in events:
        check_identifiers(event.permit)
    current = dict(held)
    applied_events: list[tuple[ChangeEvent, PermitRecord | None]] = []
    duplicates = unchanged = applied = 0
    cursor = stored_cursor
    for event in sorted(events, key=lambda e: e.seq):
        if event.seq <= stored_cursor:
            duplicates += 1  # WIRE/DESIGN "Sync": a replayed event is a no-op
            continue
        cursor = max(cursor, event.seq)
        record = current[event.permit.pn]
        if record is not None and event.permit.v <= record.v:
            unchanged += 1  # version guard: never replace with an older or equal version
            continue
        applied_events.append((event, record))
        current[event.permit.pn] = event.permit
        applied += 1
    changed = [pn for pn in page_permits(events) if current[pn] is not held[pn]]
    written: dict[str, PermitRecord] = {pn: current[pn] for pn in changed}  # type: ignore[misc]
    lookups = [change for pn in changed for change in _mapping_changes(pn, held[pn], written[pn])]
    return PagePlan(stored_cursor=stored_cursor, cursor=cursor, applied=applied, unchanged=unchanged,
                    duplicates=duplicates, changed=changed, held=held, written=written, lookups=lookups,
                    applied_events=applied_events)


@dataclass(frozen=True, slots=True)
class ApplyArgs:
    """ARGV of :data:`verifier.index.scripts.APPLY`: one field per argument, in the
    script's order (the comment beside the script lists them by these names)."""

    pointer: bytes
    """The live generation's pointer the page was planned on."""
    fence: int
    stored_cursor: bytes
    """The cursor as read (the script refuses the page if it moved since)."""
    cursor: int
    """The cursor after the page."""
    records: int
    """n: how many ``record_triples``."""
    lookups: int
    """m: how many ``lookup_triples``."""
    channel: bytes
    message: bytes
    """The change message to publish (``b""``: publish nothing)."""
    v_index: int
    """Position of ``v`` in a record's msgpack array (1-based)."""
    added: int
    """Permits new to the index (the count's delta)."""
    feed: bytes
    """The live generation's feed id (every change stream entry names it)."""
    stream_maxlen: int
    """About how many entries the change stream keeps (``XADD MAXLEN ~``)."""
    entries: int
    """k: how many ``change_entries``."""
    cursor_entry: int
    """1: append a cursor entry after the changes (the cursor moved past the last of them)."""
    record_triples: list[tuple[int, int, bytes]]
    """For each changed permit: (held v or -1, new v, new record bytes)."""
    lookup_triples: list[tuple[bytes, bytes, str]]
    """For each look-up change: (op ``+`` or ``-``, the id's field in its bucket, permit number)."""
    change_entries: list[tuple[str, int, str, bytes, str, str]] = dataclasses.field(default_factory=list)
    """For each applied event, in seq order: (type, seq, permit number, record bytes,
    upstream time, the employer before when the event changed it, else '')."""

    def __post_init__(self) -> None:
        if (self.records != len(self.record_triples) or self.lookups != len(self.lookup_triples)
                or self.entries != len(self.change_entries)):
            raise ValueError("APPLY's counts must match its triples and entries")

    def argv(self) -> list[Any]:
        """The arguments in order: the scalars, then the triples and entries flattened."""
        args: list[Any] = [getattr(self, field.name) for field in _SCALAR_FIELDS]
        for triple in self.record_triples:
            args += triple
        for triple in self.lookup_triples:
            args += triple
        for entry in self.change_entries:
            args += entry
        return args


_SCALAR_FIELDS = [f for f in dataclasses.fields(ApplyArgs) if not f.name.endswith(("_triples", "_entries"))]


def apply_call(plan: PagePlan, keys: KeyLayout, pointer: Pointer, fence: int,
               stored_raw: bytes, *, feed: bytes = b"", stream_maxlen: int = DEFAULT_STREAM_MAXLEN,
               ) -> tuple[list[bytes], ApplyArgs]:
    """KEYS and ARGV of the APPLY script for ``plan`` (``stored_raw``: the cursor's
    bytes as read, which the script compares; ``feed``: the live generation's feed id)."""
    generation = pointer.generation
    record_prefix = keys.record_prefix(generation)
    script_keys = [keys.current, keys.leader, keys.meta(generation)]
    # Each record is encoded once: the last applied event of a permit carries the record
    # written (the same object), and a page rarely has two events of one permit.
    # In the generation's layout (keys.Pointer.compact); the change stream carries the same bytes.
    encode = encode_stored if pointer.compact else encode_record
    encoded = {id(event.permit): encode(event.permit) for event, _before in plan.applied_events}
    record_triples: list[tuple[int, int, bytes]] = []
    for pn in plan.changed:
        before, after = plan.held[pn], plan.written[pn]
        script_keys.append(record_prefix + pn.encode())
        raw = encoded.get(id(after))
        record_triples.append((before.v if before is not None else -1, after.v,
                               raw if raw is not None else encode(after)))
    prefixes = {SSN: keys.ssn_prefix(generation), CN: keys.cn_prefix(generation)}
    lookup_triples: list[tuple[bytes, bytes, str]] = []
    for change in plan.lookups:
        ident = change.ident.encode()
        script_keys.append(prefixes[change.kind] + b"%d" % bucket_of(ident, pointer.buckets))
        lookup_triples.append((change.op, lookup_field(ident, pointer.hashed), change.pn))
    script_keys.append(keys.changelog)
    change_entries = [
        (event.type, event.seq, event.permit.pn, encoded[id(event.permit)], repr(float(event.time)),
         before.emp if before is not None and before.emp != event.permit.emp else "")
        for event, before in plan.applied_events
    ]
    last_change = plan.applied_events[-1][0].seq if plan.applied_events else None
    message = encode_change(ChangeMessage("apply", generation, plan.cursor, plan.changed)) if plan.changed else b""
    return script_keys, ApplyArgs(
        pointer=pointer.raw, fence=fence, stored_cursor=stored_raw, cursor=plan.cursor,
        records=len(record_triples), lookups=len(lookup_triples), channel=keys.channel, message=message,
        v_index=V_INDEX, added=plan.added, feed=feed, stream_maxlen=stream_maxlen, entries=len(change_entries),
        cursor_entry=int(last_change != plan.cursor), record_triples=record_triples,
        lookup_triples=lookup_triples, change_entries=change_entries,
    )
