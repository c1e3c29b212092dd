"""The simulated upstream: a thin facade over its three parts.

- :class:`~verifier.upstream.feed.PermitFeed`: the permits, their lifecycle events and
  the change feed;
- :class:`~verifier.upstream.snapshots.Snapshots`: consistent views of the registry and
  their encoded stream;
- :class:`~verifier.upstream.issuing_desk.IssuingDesk`: keys, the trust list, and real
  signed codes, card certificates and software cards.

:class:`Upstream` builds the three from one seed and keeps the fault switches of the
HTTP face (``app.py``); its methods are the parts' own, passed through, so that the app,
the CLI, the demo and the tests speak to one object. New capabilities go into the part
they belong to (issuing endpoints: the desk, ``upstream.desk``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from verifier.index.records import ChangeEvent, EventType, PermitRecord
from verifier.lib.upstream_notice import Notice
from verifier.upstream.feed import DEFAULT_RETAIN, MAX_PERMITS, PermitFeed
from verifier.upstream.issuing_desk import IssuingDesk, KeySet
from verifier.upstream.population import Population
from verifier.upstream.snapshots import SnapshotView, Snapshots

if TYPE_CHECKING:
    from verifier.issuing import KeyRing, SoftwareCard

__all__ = ["Faults", "Upstream"]


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


class Upstream:
    """The simulated upstream permit system (made by :meth:`create`)."""

    __slots__ = ("feed", "snapshots", "desk", "faults", "_fault_rng")

    def __init__(self, feed: PermitFeed, desk: IssuingDesk, fault_rng: random.Random) -> None:
        self.feed = feed
        self.snapshots = Snapshots(feed)
        self.desk = desk
        self.faults = Faults()
        self._fault_rng = fault_rng

    @classmethod
    def create(
        cls,
        *,
        permits: int,
        seed: int,
        as_of: dt.date | None = None,
        event_rate: float = 0.0,
        retain: int = DEFAULT_RETAIN,
        key_ring: KeyRing | None = None,
    ) -> "Upstream":
        if not 0 <= permits <= MAX_PERMITS:
            raise ValueError(f"permits must be between 0 and {MAX_PERMITS}")
        as_of = as_of or dt.datetime.now(dt.timezone.utc).date()
        feed = PermitFeed.create(Population(seed, permits, as_of), rng=random.Random(seed * 1_000_003 + 17),
                                 retain=retain, event_rate=event_rate)
        secret = hashlib.blake2b(b"simulator-secrets:%d" % seed, digest_size=32).digest()
        return cls(feed, IssuingDesk(feed, secret, key_ring), random.Random(seed * 1_000_003 + 29))

    # -- the feed's state -----------------------------------------------------------

    @property
    def population(self) -> Population:
        return self.feed.population

    @property
    def feed_id(self) -> str:
        return self.feed.feed_id

    @property
    def seq(self) -> int:
        return self.feed.seq

    @property
    def count(self) -> int:
        return self.feed.count

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still retained (seq + 1 when none is)."""
        return self.feed.first_seq

    @property
    def retain(self) -> int:
        return self.feed.retain

    @property
    def event_rate(self) -> float:
        return self.feed.event_rate

    @event_rate.setter
    def event_rate(self, rate: float) -> None:
        self.feed.event_rate = rate

    # -- permits, events, the feed (PermitFeed) -----------------------------------------

    def record_at(self, i: int) -> PermitRecord:
        return self.feed.record_at(i)

    def permit(self, pn: str) -> PermitRecord:
        return self.feed.permit(pn)

    def permit_of_card(self, cn: str) -> PermitRecord:
        return self.feed.permit_of_card(cn)

    def apply(self, kind: EventType, pn: str | None = None, **options: Any) -> ChangeEvent:
        return self.feed.apply(kind, pn, **options)

    def random_events(self, count: int) -> tuple[int, int]:
        return self.feed.random_events(count)

    def hold(self, permit_numbers: list[str]) -> int:
        return self.feed.hold(permit_numbers)

    def silent_changes(self, count: int) -> list[str]:
        return self.feed.silent_changes(count)

    def reset_feed(self, silent_changes: int = 0) -> str:
        return self.feed.reset_feed(silent_changes)

    def set_retain(self, retain: int) -> None:
        self.feed.set_retain(retain)

    def feed_events(self, after: int, limit: int) -> tuple[str, int, int, float, float, list[bytes]] | None:
        return self.feed.feed_events(after, limit)

    async def generate_events(self, stop: asyncio.Event) -> None:
        await self.feed.generate_events(stop)

    # -- snapshots (Snapshots) ------------------------------------------------------------

    def snapshot_view(self) -> SnapshotView:
        return self.snapshots.view()

    def snapshot_frames(self, view: SnapshotView) -> Iterator[bytes]:
        return self.snapshots.frames(view)

    def warm(self) -> float:
        return self.snapshots.warm()

    def records(self) -> Iterator[PermitRecord]:
        return self.snapshots.records()

    # -- keys and issuing (IssuingDesk) ---------------------------------------------------

    @property
    def keys(self) -> KeySet:
        return self.desk.keys

    def trust_list(self) -> dict[str, Any]:
        """The trust list as served: the desk's, unless the ``bad_trust_list`` fault is on."""
        return self._served(self.desk.trust_list())

    def rotate_key(self) -> dict[str, Any]:
        return self._served(self.desk.rotate_key())

    def revoke_key(self, kid: str) -> dict[str, Any]:
        return self._served(self.desk.revoke_key(kid))

    def _served(self, document: dict[str, Any]) -> dict[str, Any]:
        if self.faults.bad_trust_list:
            document["keys"][0] = {**document["keys"][0], "kid": "AAAAAAAAAAA"}
        return document

    def mint_wp1(self, pn: str, *, iat: int | None = None, exp: int | None = None) -> tuple[str, PermitRecord]:
        return self.desk.mint_wp1(pn, iat=iat, exp=exp)

    def mint_es1(self, pn: str, *, iat: int | None = None, lifetime: int = 60) -> tuple[str, PermitRecord]:
        return self.desk.mint_es1(pn, iat=iat, lifetime=lifetime)

    def mint_card(
        self, pn: str, *, cn: str | None = None, iat: int | None = None, exp: int | None = None
    ) -> tuple[str, bytes, PermitRecord]:
        return self.desk.mint_card(pn, cn=cn, iat=iat, exp=exp)

    def card(self, cn: str) -> SoftwareCard:
        return self.desk.card(cn)

    def notice(self, pn: str) -> Notice:
        return self.desk.notice(pn)

    # -- faults -----------------------------------------------------------------------

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
