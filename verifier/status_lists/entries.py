"""From permit records to the entries of the two lists: the one rule, and the lists it makes.

For a record with ``si`` (its entry in ``permits``) and ``ci`` (its newest card's in
``cards``), WIRE-FORMAT 8:

- ``permits[si]``: 0 when the permit is active, 1 when cancelled. (2, suspended, is
  written by no one yet: the upstream has no suspension today.)
- ``cards[ci]``: 0 when that card (the last of ``cards``) is active and so is its
  permit, else 1: a lost or replaced card, or the card of a cancelled permit (stricter
  than "lost or replaced": a card read offline is checked against ``cards`` alone, and
  must not be VALID for a cancelled permit).

Every index no record claims is 1 (:data:`~verifier.status_lists.bits.DENY`): a card
replaced by a newer one is no longer its record's ``ci``, so it reads 1 without
anyone writing it. The lists are a function of the index's records alone: rebuilt
from any copy of the index (a resync, a restart, a FLUSHALL and a reload) they are the
same, bit for bit.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from verifier.index.records import PermitRecord
from verifier.index.status_lists import BITS, CARD_INVALID, CARD_VALID, CARDS, PERMIT_CANCELLED, PERMIT_VALID, PERMITS

from .bits import StatusArray

__all__ = ["ListEntries", "card_entry", "permit_entry"]

_NO_CARD = -1


def permit_entry(record: PermitRecord) -> int:
    return PERMIT_VALID if record.status == "active" else PERMIT_CANCELLED


def card_entry(record: PermitRecord) -> int:
    newest = record.cards[-1] if record.cards else None
    return CARD_VALID if newest is not None and newest.status == "active" and record.status == "active" \
        else CARD_INVALID


class ListEntries:
    """Both lists' entries, kept up to date one record at a time (:meth:`apply`).

    A changed record can move its ``ci`` (a card replaced): the entry it leaves must go
    back to 1. So the card entry each permit holds is remembered, by ``si`` (dense, 8
    bytes a permit), and cleared when the permit moves on. ``si`` itself never moves
    (the upstream assigns it once); a full rebuild (:meth:`build`) owes nothing to this.
    """

    __slots__ = ("permits", "cards", "_card_of")

    def __init__(self) -> None:
        self.permits = StatusArray(BITS[PERMITS])
        self.cards = StatusArray(BITS[CARDS])
        self._card_of = array("q")

    @classmethod
    def build(cls, records: Iterable[PermitRecord]) -> "ListEntries":
        entries = cls()
        for record in records:
            entries.apply(record)
        return entries

    def apply(self, record: PermitRecord) -> set[str]:
        """Take a record's current state; the names of the lists that changed."""
        changed: set[str] = set()
        si, ci = record.si, record.ci
        if si is None:
            if ci is not None and self.cards.set(ci, card_entry(record)):
                changed.add(CARDS)  # no si to remember its card by: a rebuild clears a stale one
            return changed
        if self.permits.set(si, permit_entry(record)):
            changed.add(PERMITS)
        card_of = self._card_of
        if si >= len(card_of):
            card_of.extend([_NO_CARD] * (si + 1 - len(card_of)))
        held = card_of[si]
        if held != _NO_CARD and held != ci and self.cards.set(held, CARD_INVALID):
            changed.add(CARDS)
        card_of[si] = _NO_CARD if ci is None else ci
        if ci is not None and self.cards.set(ci, card_entry(record)):
            changed.add(CARDS)
        return changed

    def array(self, name: str) -> StatusArray:
        return self.permits if name == PERMITS else self.cards

    def same_as(self, other: "ListEntries") -> bool:
        return self.permits.values == other.permits.values and self.cards.values == other.cards.values
