"""The simulated upstream's state: permits, lifecycle events, the feed, keys, faults.

Everything here runs on the simulator's event loop (one thread); a lock guards the
few places another thread may call in (a test or the demo driving it in-process).

- Permits: the seeded :class:`~verifier.upstream.population.Population` plus the
  records that events changed (``_changed``) or created (indexes >= the seeded count).
- The feed: every event gets the next sequence number (dense: 1, 2, 3, ...) and is
  kept encoded (msgpack) in a window of the newest ``retain`` events; a cursor older
  than the window is answered 410 Gone.
- Snapshots: a consistent view at a sequence number S (the changed records are
  copied, seeded ones are immutable), streamed in chunks of 1,024 records; encoded
  chunks are cached and reused until an event touches one of their permits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from verifier.index.records import Card, ChangeEvent, EventType, PermitRecord
from verifier.lib.upstream_notice import Notice
from verifier.upstream import wire
from verifier.upstream.population import CHUNK_RECORDS, EVENT_CARD_BASE, Population

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


class Faults(msgspec.Struct, kw_only=True):
    """Fault switches for tests: they apply to /feed, /snapshot and /trust-list."""

    slow_ms: int = 0
    """Delay before each answer."""
    error_rate: float = 0.0
    """Share of answers replaced by a 503."""
    truncate_rate: float = 0.0
    """Share of answers cut short: a feed page loses its second half, a snapshot stops mid-stream."""
    bad_trust_list: bool = False
    """Serve a trust list whose first key's kid does not match its x (WIRE-FORMAT 4: invalid as a whole)."""


@dataclass(slots=True)
class SnapshotView:
    """What a snapshot at ``seq`` consists of; later events do not change it."""

    feed_id: str
    seq: int
    count: int
    time: float
    changed: dict[int, PermitRecord]
    chunk_versions: list[int]


@dataclass(slots=True)
class _Keys:
    ring: Any  # verifier.issuing.KeyRing
    version: int = 1
    rotations: int = 0


@dataclass(slots=True)
class Upstream:
    """The simulated upstream permit system."""

    population: Population
    retain: int = DEFAULT_RETAIN
    event_rate: float = 0.0
    clock: Any = time.time
    faults: Faults = field(default_factory=Faults)
    feed_id: str = ""
    seq: int = 0
    count: int = 0
    head_time: float = 0.0
    resets: int = 0
    held: set[str] = field(default_factory=set)
    """Permit numbers that random events leave alone (the demo's printed samples stay true)."""
    _changed: dict[int, PermitRecord] = field(default_factory=dict)
    _event_cards: dict[str, int] = field(default_factory=dict)
    _events: list[bytes] = field(default_factory=list)
    _first_seq: int = 1
    _chunk_versions: list[int] = field(default_factory=list)
    _chunk_cache: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)
    _fault_rng: random.Random = field(default_factory=random.Random)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _keys: _Keys | None = None
    _card_master_seed: bytes = b""
    _key_secret: bytes = b""
    _event_encoder: msgspec.msgpack.Encoder = field(default_factory=msgspec.msgpack.Encoder)

    @classmethod
    def create(
        cls,
        *,
        permits: int,
        seed: int,
        as_of: dt.date | None = None,
        event_rate: float = 0.0,
        retain: int = DEFAULT_RETAIN,
        key_ring: Any = None,
    ) -> "Upstream":
        if not 0 <= permits <= MAX_PERMITS:
            raise ValueError(f"permits must be between 0 and {MAX_PERMITS}")
        if retain < 1:
            raise ValueError("retain must be >= 1")
        as_of = as_of or dt.datetime.now(dt.timezone.utc).date()
        upstream = cls(population=Population(seed, permits, as_of), retain=retain, event_rate=event_rate)
        upstream.count = permits
        upstream._chunk_versions = [0] * (-(-permits // CHUNK_RECORDS))
        upstream._rng = random.Random(seed * 1_000_003 + 17)
        upstream._fault_rng = random.Random(seed * 1_000_003 + 29)
        upstream.feed_id = upstream._new_feed_id()
        secret = hashlib.blake2b(b"simulator-secrets:%d" % seed, digest_size=32).digest()
        upstream._card_master_seed = hashlib.sha256(b"cards" + secret).digest()
        upstream._keys = _Keys(ring=key_ring) if key_ring is not None else None
        upstream._key_secret = secret
        return upstream

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
        with self._lock:
            return self.record_at(self.index_of(pn))

    def permit_of_card(self, cn: str) -> PermitRecord:
        with self._lock:
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

    # -- lifecycle events -----------------------------------------------------------

    def _today(self) -> dt.date:
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
            return i, self.population.new_record(i, self._today())
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
            start = max(old_vt, self._today())
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
            while len(self._chunk_versions) * CHUNK_RECORDS < self.count:
                self._chunk_versions.append(0)
        self._changed[i] = record
        self._chunk_versions[i // CHUNK_RECORDS] += 1
        for card in record.cards:
            if int(card.cn[7:]) >= EVENT_CARD_BASE:
                self._event_cards.setdefault(card.cn, i)

    def apply(self, kind: EventType, pn: str | None = None, **options: Any) -> ChangeEvent:
        """Make one lifecycle event happen now; it goes to the feed with the next seq."""
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            for pn in permit_numbers:
                self.permit(pn)  # raises UnknownPermit
            self.held.update(permit_numbers)
            return len(self.held)

    def silent_changes(self, count: int) -> list[str]:
        """Change permits without a feed event (as a restore from backup would): only a
        full resync can pick these up. Returns the permit numbers changed."""
        changed = []
        with self._lock:
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
        with self._lock:
            self.resets += 1
            self.feed_id = self._new_feed_id()
            self.seq = 0
            self.head_time = 0.0
            self._events = []
            self._first_seq = 1
            self.silent_changes(silent_changes)
            return self.feed_id

    def set_retain(self, retain: int) -> None:
        with self._lock:
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
        with self._lock:
            if after < self._first_seq - 1 or after > self.seq:
                return None
            start = after - (self._first_seq - 1)
            events = self._events[start:start + limit]
            return self.feed_id, after + len(events), self.seq, self.head_time, self.clock(), events

    # -- snapshots ----------------------------------------------------------------

    def snapshot_view(self) -> SnapshotView:
        with self._lock:
            return SnapshotView(
                feed_id=self.feed_id,
                seq=self.seq,
                count=self.count,
                time=self.clock(),
                changed=dict(self._changed),
                chunk_versions=list(self._chunk_versions),
            )

    def chunk_bytes(self, view: SnapshotView, c: int) -> bytes:
        """The msgpack array of the records of chunk ``c`` as of ``view``."""
        version = view.chunk_versions[c]
        cached = self._chunk_cache.get(c)
        if cached is not None and cached[0] == version:
            return cached[1]
        start = c * CHUNK_RECORDS
        stop = min(start + CHUNK_RECORDS, view.count)
        changed = view.changed
        base = self.population.record
        records = [changed.get(i) or base(i) for i in range(start, stop)]
        data = msgspec.msgpack.encode(records)
        with self._lock:
            # keep it only if it is still the newest version of that chunk
            if c < len(self._chunk_versions) and self._chunk_versions[c] == version:
                self._chunk_cache[c] = (version, data)
        return data

    def snapshot_frames(self, view: SnapshotView) -> Iterator[bytes]:
        """The snapshot stream of ``view``: header, record chunks, trailer (see ``wire``)."""
        header = wire.SnapshotHeader(
            format=wire.SNAPSHOT_FORMAT, feed_id=view.feed_id, seq=view.seq, count=view.count, time=view.time
        )
        yield wire.frame(wire.FRAME_HEAD, msgspec.msgpack.encode(header))
        for c in range(-(-view.count // CHUNK_RECORDS)):
            yield wire.frame(wire.FRAME_RECORDS, self.chunk_bytes(view, c))
        trailer = wire.SnapshotTrailer(count=view.count, seq=view.seq)
        yield wire.frame(wire.FRAME_TRAILER, msgspec.msgpack.encode(trailer))

    def warm(self) -> float:
        """Encode every snapshot chunk now (so the first full resync is not slowed by it)."""
        started = time.perf_counter()
        view = self.snapshot_view()
        for c in range(len(view.chunk_versions)):
            self.chunk_bytes(view, c)
        return time.perf_counter() - started

    def records(self) -> Iterator[PermitRecord]:
        """Every permit now (tests and the CLI's own checks)."""
        view = self.snapshot_view()
        base = self.population.record
        for i in range(view.count):
            yield view.changed.get(i) or base(i)

    # -- faults -------------------------------------------------------------------

    def draw_fault(self) -> str | None:
        """"error", "truncate" or None for one answer, by the configured rates."""
        faults = self.faults
        if faults.error_rate and self._fault_rng.random() < faults.error_rate:
            return "error"
        if faults.truncate_rate and self._fault_rng.random() < faults.truncate_rate:
            return "truncate"
        return None

    def fault_rng(self) -> random.Random:
        return self._fault_rng

    # -- keys and issuing -----------------------------------------------------------

    def issuers(self) -> list[str]:
        from verifier.upstream.population import _REGIONS

        return [f"CN-{code}" for code, _ in _REGIONS]

    @property
    def keys(self) -> _Keys:
        if self._keys is None:
            from verifier.issuing import IssuerKey, KeyRing

            seed = hashlib.sha256(b"issuer-key-0" + self._key_secret).digest()
            ring = KeyRing([IssuerKey.from_seed(seed, self.issuers(), created=0)])
            self._keys = _Keys(ring=ring)
        return self._keys

    def trust_list(self) -> dict[str, Any]:
        with self._lock:
            keys = self.keys
            document = {**keys.ring.trust_list(), "version": keys.version}
            if self.faults.bad_trust_list:
                document["keys"][0] = {**document["keys"][0], "kid": "AAAAAAAAAAA"}
            return document

    def rotate_key(self) -> dict[str, Any]:
        """A new active key; the previous active key is retired (still verifies)."""
        with self._lock:
            keys = self.keys
            keys.rotations += 1
            seed = hashlib.sha256(b"issuer-key-%d" % keys.rotations + self._key_secret).digest()
            issuers = list(keys.ring.active.issuers) if any(k.status == "active" for k in keys.ring) else self.issuers()
            keys.ring.rotate(issuers, seed=seed, created=int(self.clock()))
            keys.version += 1
            return self.trust_list()

    def revoke_key(self, kid: str) -> dict[str, Any]:
        with self._lock:
            keys = self.keys
            keys.ring.revoke(kid)
            keys.version += 1
            return self.trust_list()

    def _signing_key(self, record: PermitRecord) -> tuple[Any, str]:
        key = self.keys.ring.active
        iss = f"CN-{record.pn[2:8]}"
        return key, (iss if iss in key.issuers else key.issuers[0])

    def mint_wp1(self, pn: str, *, iat: int | None = None, exp: int | None = None) -> tuple[str, PermitRecord]:
        from verifier.issuing import mint_wp1

        with self._lock:
            record = self.permit(pn)
            key, iss = self._signing_key(record)
        now = int(self.clock()) if iat is None else iat
        return mint_wp1(key, record, iat=now, exp=exp, iss=iss), record

    def mint_es1(self, pn: str, *, iat: int | None = None, lifetime: int = 60) -> tuple[str, PermitRecord]:
        from verifier.issuing import mint_es1

        with self._lock:
            record = self.permit(pn)
            key, iss = self._signing_key(record)
        now = int(self.clock()) if iat is None else iat
        return mint_es1(key, record, iat=now, lifetime=lifetime, iss=iss), record

    def notice(self, pn: str) -> Notice:
        """The holder's Notice of Foreigner's Work Permit: a WP1 code of the permit as it is
        now, valid to the end of its last day. None is issued for a cancelled or ended permit."""
        with self._lock:
            record = self.permit(pn)
        if record.status != "active":
            raise EventNotApplicable("the permit is cancelled: no notice is issued")
        if record.vt < self._today().isoformat():
            raise EventNotApplicable("the permit has ended: no notice is issued")
        issued_at = self.clock()
        qr, record = self.mint_wp1(pn, iat=int(issued_at))
        return Notice(qr=qr, pn=record.pn, v=record.v, issued_at=issued_at)

    def card(self, cn: str) -> Any:
        from verifier.issuing import SoftwareCard

        return SoftwareCard.derive(self._card_master_seed, cn)

    def mint_card(
        self, pn: str, *, cn: str | None = None, iat: int | None = None, exp: int | None = None
    ) -> tuple[str, bytes, PermitRecord]:
        from verifier.issuing import mint_card_certificate

        with self._lock:
            record = self.permit(pn)
            key, iss = self._signing_key(record)
        cn = cn or record.cn
        if cn is None or record.card_status(cn) is None:
            raise EventNotApplicable("permit has no such card" if cn else "permit has no active card")
        if record.ssn is None:
            raise EventNotApplicable("permit has no social security number")
        now = int(self.clock()) if iat is None else iat
        expires = now + 5 * 365 * 86400 if exp is None else exp
        card = self.card(cn)
        certificate = mint_card_certificate(
            key, {"cn": cn, "ssn": record.ssn, "pn": record.pn}, card.public_key, iat=now, exp=expires, iss=iss
        )
        return cn, certificate, record

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
