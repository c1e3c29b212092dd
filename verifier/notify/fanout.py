"""From the index's change stream to the outbox: who hears of which change, and what
was missed.

The leading notifier reads the change stream (``verifier.index.change_stream``)
through the consumer group ``notify``, plans each batch here (pure: no Redis) and
writes the batch's messages and its new :class:`Cursor` in one ENQUEUE script, then
acknowledges the entries. A batch read again after a crash plans nothing twice: its
changes are at or below the cursor.

The cursor is the feed and the sequence number up to which every change was seen.
Entries chain through the index's own cursor, so a missing stretch shows: a change
or cursor entry whose page began above it (the stream was trimmed past entries not
yet read, or Redis lost its data with them), a snapshot switch above it (a full
resync folded changes into the snapshot), another feed id (the upstream reset its
feed). Each gap is logged once, at ERROR, and every subscription gets a
``notifications.gap`` message naming the range: its changes were applied to the
index but no message will tell of them; the subscriber looks its permits up again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from verifier.index.change_stream import ChangeEntry, entry_millis
from verifier.index.records import PermitRecord

from . import events
from .outbox import Message
from .store import Subscription

__all__ = ["Audience", "BatchPlan", "Cursor", "Gap", "plan_batch"]

log = logging.getLogger("verifier.notify")


@dataclass(frozen=True, slots=True)
class Cursor:
    feed: str
    seq: int

    def encode(self) -> str:
        return f"{self.feed} {self.seq}"

    @classmethod
    def decode(cls, raw: str | bytes | None) -> "Cursor | None":
        if not raw:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        feed, _, seq = text.rpartition(" ")
        return cls(feed, int(seq))


@dataclass(frozen=True, slots=True)
class Gap:
    feed: str
    first: int | None
    """The first sequence number missed (None: not known, the feed was reset)."""
    last: int
    feed_reset: bool


class Audience:
    """The subscriptions that receive anything, indexed for the fan-out."""

    def __init__(self, subscriptions: Iterable[Subscription], revoked_owners: set[str] = frozenset(),  # type: ignore[assignment]
                 verified_platforms: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.subscriptions = [s for s in subscriptions if s.key_id not in revoked_owners]
        self.by_employer: dict[str, list[Subscription]] = {}
        self.every_permit: list[Subscription] = []
        for sub in self.subscriptions:
            if sub.role == "partner":
                for employer in sub.employers:
                    self.by_employer.setdefault(employer, []).append(sub)
            else:
                self.every_permit.append(sub)
        self.verified = [s for s in self.every_permit if s.role == "essc_platform" and s.key_id in verified_platforms
                         and s.wants(events.VERIFIED)]

    def of_permit(self, record: PermitRecord) -> list[Subscription]:
        """Who may hear of this permit: its employer's partners, the admins and the platform."""
        return self.every_permit + self.by_employer.get(record.emp, [])

    def of_change(self, entry: ChangeEntry) -> list[tuple[Subscription, str]]:
        """(subscription, employer change) of everyone who hears of ``entry``."""
        record = entry.record
        assert record is not None
        hearers = [(s, "") for s in self.every_permit]
        previous = entry.previous_employer
        for sub in self.by_employer.get(record.emp, []):
            hearers.append((sub, "joined" if previous and previous not in sub.employers else ""))
        if previous:
            for sub in self.by_employer.get(previous, []):
                if record.emp not in sub.employers:
                    hearers.append((sub, "left"))
        return hearers


@dataclass
class BatchPlan:
    cursor: Cursor | None
    messages: list[Message] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    changes: int = 0
    """Changes newly covered (0: the batch was seen before)."""


def _gap_messages(gap: Gap, audience: Audience, now: float) -> list[Message]:
    body = events.gap_body(gap.first, gap.last, now, feed_reset=gap.feed_reset)
    webhook_id = events.gap_id(gap.feed, gap.first if gap.first is not None else 0, gap.last)
    return [Message(sub=s.id, key="", webhook_id=webhook_id, type=events.GAP, body=body,
                    enqueued_ms=int(now * 1000), event_time=now) for s in audience.subscriptions]


def plan_batch(entries: Sequence[ChangeEntry], cursor: Cursor | None, audience: Audience, now: float) -> BatchPlan:
    """The messages of ``entries`` (in stream order) past ``cursor``, the new cursor, the gaps."""
    plan = BatchPlan(cursor)

    def gap(first: int | None, last: int, feed: str, feed_reset: bool) -> None:
        found = Gap(feed, first, last, feed_reset)
        plan.gaps.append(found)
        plan.messages.extend(_gap_messages(found, audience, now))

    for entry in entries:
        current = plan.cursor
        if entry.kind == "switch":
            if current is None:
                plan.cursor = Cursor(entry.feed, entry.seq)
            elif entry.feed != current.feed:
                gap(None, entry.seq, entry.feed, True)
                plan.cursor = Cursor(entry.feed, entry.seq)
            elif entry.seq > current.seq:
                gap(current.seq + 1, entry.seq, entry.feed, False)
                plan.cursor = Cursor(entry.feed, entry.seq)
            continue
        if current is None:
            current = plan.cursor = Cursor(entry.feed, entry.cursor_before)  # the first start: from here
        elif entry.feed != current.feed:
            gap(None, entry.cursor_before, entry.feed, True)
            current = plan.cursor = Cursor(entry.feed, entry.cursor_before)
        elif entry.cursor_before > current.seq:
            gap(current.seq + 1, entry.cursor_before, entry.feed, False)
            current = plan.cursor = Cursor(entry.feed, entry.cursor_before)
        if entry.kind == "cursor":
            if entry.cursor_after > current.seq:
                plan.cursor = Cursor(entry.feed, entry.cursor_after)
            continue
        if entry.seq <= current.seq:
            continue  # seen before (a batch read again after a crash)
        plan.cursor = Cursor(entry.feed, entry.seq)
        plan.changes += 1
        event_type = events.CHANGE_TYPES.get(entry.kind)  # type: ignore[call-overload]
        if event_type is None:
            log.error("notify: change stream entry %s has an unknown kind %r; no message", entry.id, entry.kind)
            continue
        applied_ms = entry_millis(entry.id)
        webhook_id = events.change_id(entry.feed, entry.seq)
        bodies: dict[tuple[tuple[str, ...], str], bytes] = {}
        for sub, employer_change in audience.of_change(entry):
            if not sub.wants(event_type) or applied_ms < sub.created_ms:
                continue  # a subscription hears of changes applied after it was made
            body = bodies.get((sub.fields, employer_change))
            if body is None:
                body = bodies[(sub.fields, employer_change)] = events.change_body(entry, sub.fields, employer_change)
            plan.messages.append(Message(sub=sub.id, key=entry.pn, webhook_id=webhook_id, type=event_type,
                                         body=body, enqueued_ms=int(now * 1000), event_time=entry.time))
    for found in plan.gaps:
        first = "unknown (the feed was reset)" if found.first is None else str(found.first)
        log.error("notify: GAP in the change stream of feed %s: changes %s to %d were applied without a "
                  "notification (the index was rebuilt or its stream trimmed); subscribers are sent %s",
                  found.feed, first, found.last, events.GAP)
    return plan
