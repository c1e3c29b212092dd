"""The simulated upstream's permits and their change feed.

- Permits: the seeded :class:`~verifier.upstream.population.Population` plus the
  records that events changed (``_changed``) or created (indexes >= the seeded count).
- Lifecycle events (issue, extend, change, cancel, card events) change a permit and
  go to the feed; random ones at ``event_rate`` per second while the app runs.
- The feed: every event gets the next sequence number (dense: 1, 2, 3, ...) and is
  kept encoded (msgpack) in a window of the newest ``retain`` events; a cursor older
  than the window is answered 410 Gone.

Everything runs on the simulator's event loop (one thread); :attr:`PermitFeed.lock`
guards the few places another thread may call in (a test or the demo driving it
in-process), and the snapshots and the issuing desk take the same lock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from verifier.index.records import Card, ChangeEvent, EventType, PermitRecord
from verifier.upstream.population import CHUNK_RECORDS, EVENT_CARD_BASE, Population

__all__ = ["DEFAULT_RETAIN", "EVENT_TYPES", "MAX_PERMITS", "EventNotApplicable", "PermitFeed", "UnknownPermit"]

EVENT_TYPES: Final[tuple[EventType, ...]] = (
    "issue", "extend", "change", "cancel", "card_issued", "card_lost", "card_replaced",
)
# How often each kind of event happens in the generated stream (weights).
_EVENT_WEIGHTS: Final = (10, 20, 15, 8, 12, 6, 8)
MAX_PERMITS: Final = 20_000_000
"""Card numbers embed 4 i + k below EVENT_CARD_BASE: keep i below that."""
DEFAULT_RETAIN: Final = 200_000


class EventNotApplicable(ValueError):
    """The event cannot happen to this permit now (e.g. cancel a cancelled permit)."""


class UnknownPermit(KeyError):
    """No permit with that number (or card with that card number)."""


@dataclass(slots=True)
class PermitFeed:
    """The permits as they are now, the events that made them so, and the feed of those events."""

    population: Population
    retain: int = DEFAULT_RETAIN
    event_rate: float = 0.0
    clock: Callable[[], float] = time.time
    feed_id: str = ""
    seq: int = 0
    count: int = 0
    head_time: float = 0.0
    resets: int = 0
    held: set[str] = field(default_factory=set)
    """Permit numbers that random events leave alone (the demo's printed samples stay true)."""
    chunk_versions: list[int] = field(default_factory=list)
    """A counter per chunk of CHUNK_RECORDS permits, bumped by every change in it (the
    snapshots' cache key)."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _changed: dict[int, PermitRecord] = field(default_factory=dict)
    _event_cards: dict[str, int] = field(default_factory=dict)
    _events: list[bytes] = field(default_factory=list)
    _first_seq: int = 1
    _rng: random.Random = field(default_factory=random.Random)
    _event_encoder: msgspec.msgpack.Encoder = field(default_factory=msgspec.msgpack.Encoder)

    @classmethod
    def create(cls, population: Population, *, rng: random.Random, retain: int = DEFAULT_RETAIN,
               event_rate: float = 0.0) -> "PermitFeed":
        if retain < 1:
            raise ValueError("retain must be >= 1")
        feed = cls(population=population, retain=retain, event_rate=event_rate, count=population.count,
                   chunk_versions=[0] * (-(-population.count // CHUNK_RECORDS)), _rng=rng)
        feed.feed_id = feed._new_feed_id()
        return feed

    def _new_feed_id(self) -> str:
        # New at every reset and every start of the simulator (its feed starts again at 0).
        digest = hashlib.blake2b(
            b"feed:%d:%d:%d" % (self.population.seed, self.resets, int(self.clock() * 1e6)), digest_size=6
        ).hexdigest()
        return f"sim-{self.population.seed}-{self.resets}-{digest}"

    # -- permits ------------------------------------------------------------------

    def record_at(self, i: int) -> PermitRecord:
        record = self._changed.get(i)
        if record is not None:
            return record
        if 0 <= i < self.population.count:
            return self.population.record(i)
        raise UnknownPermit(i)

    def index_of(self, pn: str) -> int:
        i = self.population.index_of_pn(pn)
        if i is None or not 0 <= i < self.count:
            raise UnknownPermit(pn)
        if self.record_at(i).pn != pn:  # right serial, wrong region or year
            raise UnknownPermit(pn)
        return i

    def permit(self, pn: str) -> PermitRecord:
        with self.lock:
            return self.record_at(self.index_of(pn))

    def permit_of_card(self, cn: str) -> PermitRecord:
        with self.lock:
            i = self._event_cards.get(cn)
            if i is None:
                seeded = self.population.index_of_cn(cn)
                if seeded is None:
                    raise UnknownPermit(cn)
                i = seeded[0]
            if not 0 <= i < self.count:
                raise UnknownPermit(cn)
            record = self.record_at(i)
            if record.card_status(cn) is None:
                raise UnknownPermit(cn)
            return record

    def changed_records(self) -> dict[int, PermitRecord]:
        """A copy of the records events changed or created, by index (a snapshot's own)."""
        return dict(self._changed)

    # -- lifecycle events -----------------------------------------------------------

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone(dt.timedelta(hours=8))).date()

    def _new_card_number(self, record: PermitRecord) -> str:
        n = EVENT_CARD_BASE + len(self._event_cards)
        return f"S{record.pn[2:8]}{n:08d}"

    def _mutate(self, kind: EventType, i: int | None, **options: Any) -> tuple[int, PermitRecord]:
        """The permit's next state after an event of ``kind`` (not yet stored)."""
        if kind == "issue":
            if self.count >= MAX_PERMITS:
                raise EventNotApplicable("the simulator holds its maximum number of permits")
            i = self.count
            return i, self.population.new_record(i, self.today())
        if i is None:
            raise ValueError("this event needs a permit")
        old = self.record_at(i)
        v = old.v + 1
        if old.status == "cancelled" and kind != "card_lost":
            raise EventNotApplicable(f"permit is cancelled; {kind} does not apply")
        if kind == "extend":
            years = int(options.get("years") or self._rng.choice((1, 2, 3)))
            if not 1 <= years <= 5:
                raise EventNotApplicable("an extension is 1 to 5 years")
            old_vt = dt.date.fromisoformat(old.vt)
            start = max(old_vt, self.today())
            new_vt = dt.date.fromordinal(start.toordinal() + 365 * years)
            return i, msgspec.structs.replace(old, vt=new_vt.isoformat(), v=v)
        if kind == "change":
            emp = options.get("emp")
            if emp is None:
                region = old.pn[2:8]
                for _ in range(8):
                    emp = self.population.pick_employer(region, self._rng.getrandbits(64))
                    if emp != old.emp:
                        break
            if not isinstance(emp, str) or len(emp) != 18:
                raise EventNotApplicable("an employer's credit code is 18 characters")
            return i, msgspec.structs.replace(old, emp=emp, v=v)
        if kind == "cancel":
            return i, msgspec.structs.replace(old, status="cancelled", v=v)
        if kind == "card_issued":
            if old.cn is not None:
                raise EventNotApplicable("permit already has an active card")
            ssn = old.ssn or self.population.ssn_for(i, old)
            cn = self._new_card_number(old)
            cards = old.cards + (Card(cn, "active"),)
            return i, msgspec.structs.replace(old, ssn=ssn, cards=cards, v=v)
        if kind in ("card_lost", "card_replaced"):
            active = old.cn
            if active is None:
                raise EventNotApplicable("permit has no active card")
            if kind == "card_lost":
                cards = tuple(Card(c.cn, "lost") if c.cn == active else c for c in old.cards)
            else:
                cn = self._new_card_number(old)
                cards = tuple(Card(c.cn, "replaced") if c.cn == active else c for c in old.cards)
                cards += (Card(cn, "active"),)
            return i, msgspec.structs.replace(old, cards=cards, v=v)
        raise ValueError(f"unknown event type {kind!r}")

    def _store(self, i: int, record: PermitRecord) -> None:
        if i >= self.count:  # an issue event: a new permit at the end
            self.count = i + 1
            while len(self.chunk_versions) * CHUNK_RECORDS < self.count:
                self.chunk_versions.append(0)
        self._changed[i] = record
        self.chunk_versions[i // CHUNK_RECORDS] += 1
        for card in record.cards:
            if int(card.cn[7:]) >= EVENT_CARD_BASE:
                self._event_cards.setdefault(card.cn, i)

    def apply(self, kind: EventType, pn: str | None = None, **options: Any) -> ChangeEvent:
        """Make one lifecycle event happen now; it goes to the feed with the next seq."""
        with self.lock:
            i = None if kind == "issue" else self.index_of(pn or "")
            i, record = self._mutate(kind, i, **options)
            self._store(i, record)
            return self._append(kind, record)

    def _append(self, kind: EventType, record: PermitRecord) -> ChangeEvent:
        now = self.clock()
        self.seq += 1
        event = ChangeEvent(seq=self.seq, time=now, type=kind, permit=record)
        self._events.append(self._event_encoder.encode(event))
        self.head_time = now
        excess = len(self._events) - self.retain
        if excess > max(1, self.retain // 4):  # trim in batches: amortised O(1)
            del self._events[:excess]
            self._first_seq += excess
        return event

    def random_events(self, count: int) -> tuple[int, int]:
        """Generate ``count`` random lifecycle events; returns (first seq, last seq)."""
        with self.lock:
            first = self.seq + 1
            made = 0
            attempts = 0
            while made < count and attempts < count * 20 + 100:
                attempts += 1
                kind = self._rng.choices(EVENT_TYPES, _EVENT_WEIGHTS)[0]
                i = None if kind == "issue" or self.count == 0 else self._rng.randrange(self.count)
                if i is None and kind != "issue":
                    kind = "issue"
                if i is not None and self.held and self.record_at(i).pn in self.held:
                    continue
                try:
                    i, record = self._mutate(kind, i)
                except EventNotApplicable:
                    continue
                self._store(i, record)
                self._append(kind, record)
                made += 1
            return first, self.seq

    def hold(self, permit_numbers: list[str]) -> int:
        """Exclude these permits from random events (explicit admin events still apply)."""
        with self.lock:
            for pn in permit_numbers:
                self.permit(pn)  # raises UnknownPermit
            self.held.update(permit_numbers)
            return len(self.held)

    def silent_changes(self, count: int) -> list[str]:
        """Change permits without a feed event (as a restore from backup would): only a
        full resync can pick these up. Returns the permit numbers changed."""
        changed = []
        with self.lock:
            for _ in range(count):
                if self.count == 0:
                    break
                i = self._rng.randrange(self.count)
                old = self.record_at(i)
                region = old.pn[2:8]
                emp = self.population.pick_employer(region, self._rng.getrandbits(64))
                self._store(i, msgspec.structs.replace(old, emp=emp, v=old.v + 1))
                changed.append(old.pn)
        return changed

    def reset_feed(self, silent_changes: int = 0) -> str:
        """The feed starts again at seq 0 under a new feed id (fault switch)."""
        with self.lock:
            self.resets += 1
            self.feed_id = self._new_feed_id()
            self.seq = 0
            self.head_time = 0.0
            self._events = []
            self._first_seq = 1
            self.silent_changes(silent_changes)
            return self.feed_id

    def set_retain(self, retain: int) -> None:
        with self.lock:
            if retain < 1:
                raise ValueError("retain must be >= 1")
            self.retain = retain
            excess = len(self._events) - retain
            if excess > 0:
                del self._events[:excess]
                self._first_seq += excess

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still retained (seq + 1 when none is)."""
        return self._first_seq

    # -- the feed -----------------------------------------------------------------

    def feed_events(self, after: int, limit: int) -> tuple[str, int, int, float, float, list[bytes]] | None:
        """(feed_id, page_end, last_seq, head_time, now, encoded events) or None when
        ``after`` is outside the retained window (older, or past the head)."""
        with self.lock:
            if after < self._first_seq - 1 or after > self.seq:
                return None
            start = after - (self._first_seq - 1)
            events = self._events[start:start + limit]
            return self.feed_id, after + len(events), self.seq, self.head_time, self.clock(), events

    # -- the event stream ---------------------------------------------------------

    async def generate_events(self, stop: asyncio.Event) -> None:
        """Make ``event_rate`` random events per second until ``stop`` is set."""
        owed = 0.0
        last = time.monotonic()
        while not stop.is_set():
            rate = self.event_rate
            tick = 0.2 if rate <= 0 else min(0.05, max(0.005, 1.0 / rate))
            try:
                await asyncio.wait_for(stop.wait(), timeout=tick)
            except TimeoutError:
                pass
            now = time.monotonic()
            if rate > 0:
                owed += rate * (now - last)
                n = int(owed)
                if n:
                    owed -= n
                    self.random_events(min(n, 100_000))
            else:
                owed = 0.0
            last = now
