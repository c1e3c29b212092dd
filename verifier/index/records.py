"""The permit record: one shape shared by the upstream feed, the index and the API.

The upstream's change feed and snapshot carry whole records (the state of a permit
after the change), so applying one is an idempotent upsert guarded by ``v``.
Records are stored as msgspec msgpack arrays (``array_like``) to keep the index small
(``si`` and ``ci``, the Status List entries, add 2 to 10 bytes a permit).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

StatusIndex = Annotated[int, msgspec.Meta(ge=0)]
"""An entry of a Status List (WIRE-FORMAT 8): assigned by the upstream at issuance, never reused."""

PermitStatus = Literal["active", "cancelled"]
CardStatus = Literal["active", "lost", "replaced"]
EventType = Literal[
    "issue", "extend", "change", "cancel", "card_issued", "card_lost", "card_replaced"
]


class Card(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """A social security card that carries (or carried) the permit."""

    cn: str
    """Card number."""
    status: CardStatus
    """active, lost (reported lost) or replaced (a new card was issued in its place)."""


class PermitRecord(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """The authoritative state of one work permit, as mirrored from the upstream."""

    pn: str
    """Work permit number."""
    n: str
    """Name in Latin letters, as in the passport."""
    nat: str
    """Nationality, ISO 3166-1 alpha-3."""
    dob: str
    """Date of birth, YYYY-MM-DD."""
    cat: Literal["A", "B", "C"]
    """Permit category."""
    emp: str
    """Employer's unified social credit code (18 characters)."""
    vf: str
    """Valid from, YYYY-MM-DD (China Standard Time), inclusive."""
    vt: str
    """Valid to, YYYY-MM-DD (China Standard Time), inclusive."""
    v: int
    """Version of the record; every lifecycle event bumps it."""
    status: PermitStatus = "active"
    """active or cancelled."""
    ssn: str | None = None
    """Social security number, when the foreigner has one."""
    cards: tuple[Card, ...] = ()
    """Every card that carried the permit, oldest first; at most one is active, and it is the last."""
    si: StatusIndex | None = None
    """The permit's entry in the ``permits`` Status List (WIRE-FORMAT 8); None from an upstream
    that assigns none."""
    ci: StatusIndex | None = None
    """The entry in the ``cards`` Status List of the permit's newest card (the last of ``cards``:
    the active one, or the one last lost); None when it has no card. Older cards keep the entries
    they were issued with; those are no longer any record's, so their entries read "not valid"."""

    @property
    def cn(self) -> str | None:
        """The active card's number, if any."""
        for card in self.cards:
            if card.status == "active":
                return card.cn
        return None

    def card_status(self, cn: str) -> CardStatus | None:
        for card in self.cards:
            if card.cn == cn:
                return card.status
        return None


class ChangeEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One entry of the upstream's ordered change feed."""

    seq: int
    """Monotonic sequence number, strictly increasing along the feed."""
    time: float
    """When the upstream made the change (epoch seconds)."""
    type: EventType
    """What happened."""
    permit: PermitRecord
    """The permit's whole state after the change."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PermitRecord)


def encode_record(record: PermitRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> PermitRecord:
    return _decoder.decode(data)


_UNUSABLE_IN_PN = re.compile(r"[\s\x00]")


def check_identifiers(record: PermitRecord) -> None:
    """Refuse identifiers the index cannot store unambiguously: a permit number with
    white space (look-up values are space-separated lists of permit numbers), or any
    id with a NUL or empty. Raised as ValueError naming the permit: a corrupt upstream
    record stops the sync rather than being indexed wrongly."""
    pn = record.pn
    if not pn or _UNUSABLE_IN_PN.search(pn):
        raise ValueError(f"unusable permit number {pn!r}")
    if record.ssn is not None and (not record.ssn or "\0" in record.ssn):
        raise ValueError(f"unusable ssn on permit {pn!r}")
    for card in record.cards:
        if not card.cn or "\0" in card.cn:
            raise ValueError(f"unusable card number on permit {pn!r}")
