"""What the notifications say: event types, who may have them, and the message bodies.

Pure functions and constants, no I/O: the webhooks API (which event types a role may
subscribe to) and the notifier (what a message says) share them.

A message body is the Standard Webhooks payload: ``{"type", "timestamp", "data"}``,
minified JSON, ``timestamp`` the time of the event (RFC 3339, UTC). ``data`` always
has ``pn``; a change of the upstream feed has ``seq``, its sequence number (receivers
order and deduplicate by it); ``data.permit`` has the permit's fields that the
subscription's key may see, never more.

The ``webhook-id`` of a message is that of its event (:func:`change_id` and the like),
the same for every subscription and every retry, so a receiver deduplicates by it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from verifier.index.change_stream import ChangeEntry
from verifier.index.records import EventType, PermitRecord

__all__ = [
    "ALL",
    "CHANGE_TYPES",
    "EXPIRING",
    "GAP",
    "SUBSCRIBABLE",
    "VERIFIED",
    "change_body",
    "change_id",
    "expiring_body",
    "expiring_id",
    "gap_body",
    "gap_id",
    "permit_view",
    "rfc3339",
    "verified_body",
    "verified_id",
]

ALL: Final = "*"
"""Every event type the subscription's role may have."""

CHANGE_TYPES: Final[Mapping[EventType, str]] = {
    "issue": "permit.issued",
    "extend": "permit.extended",
    "change": "permit.changed",
    "cancel": "permit.cancelled",
    "card_issued": "card.issued",
    "card_lost": "card.lost",
    "card_replaced": "card.replaced",
}
"""The upstream feed's kinds of change and the event type of each (every kind the feed has)."""

EXPIRING: Final = "permit.expiring"
"""An expiry reminder (no ``seq``: it is not a change of the feed)."""
VERIFIED: Final = "permit.verified"
"""The holder's permit was verified (from the audit; the e-card platform's opt-in)."""
GAP: Final = "notifications.gap"
"""Changes were applied that no message told of (the index was rebuilt, the stream
trimmed past them): look the permits up again. Sent to every subscription."""

_CHANGES = frozenset(CHANGE_TYPES.values())
SUBSCRIBABLE: Final[Mapping[str, frozenset[str]]] = {
    # employers' HR platforms: their own employers' permits
    "partner": _CHANGES | {EXPIRING},
    # every change the sync job applies
    "admin": _CHANGES | {EXPIRING},
    # the e-card platform, for the holder's app; verified notices only when its setting is on
    "essc_platform": _CHANGES | {EXPIRING, VERIFIED},
}
"""The roles that may subscribe, and the event types each may have."""

_FEED_TAG_BYTES = 5
_encode = msgspec.json.Encoder().encode


def rfc3339(epoch_s: float) -> str:
    """``2026-11-27T10:31:02.113Z``."""
    moment = dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _digest(*parts: str, size: int = 8) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=size).hexdigest()


def change_id(feed: str, seq: int) -> str:
    """The webhook-id of change ``seq`` of the feed ``feed`` (no '.': Standard Webhooks)."""
    return f"msg_{_digest(feed, size=_FEED_TAG_BYTES)}_{seq}"


def expiring_id(pn: str, vt: str, days: int) -> str:
    """The webhook-id of the ``days``-before reminder of a permit ending on ``vt``
    (hashed: an id says nothing of the permit)."""
    return f"msg_exp_{_digest(pn, vt, str(days))}"


def verified_id(audit_entry: str, index: int) -> str:
    return f"msg_ver_{audit_entry.replace('-', '_')}_{index}"


def gap_id(feed: str, first: int, last: int) -> str:
    return f"msg_gap_{_digest(feed, size=_FEED_TAG_BYTES)}_{first}_{last}"


def permit_view(record: PermitRecord, fields: Iterable[str]) -> dict[str, Any]:
    """The permit's ``fields`` (PermitView's names; absent values left out). ``cn`` and
    ``card_status`` are the active card's, as in a look-up by permit number
    (``verifier.api.verdicts.views.ViewSpec.of_record``; a test holds the two together)."""
    view: dict[str, Any] = {}
    cn = record.cn
    for name in fields:
        if name == "cn":
            value: Any = cn
        elif name == "card_status":
            value = record.card_status(cn) if cn is not None else None
        else:
            value = getattr(record, name)
        if value is not None:
            view[name] = value
    return view


def _card_of_event(kind: str, record: PermitRecord) -> dict[str, str] | None:
    """The card a card event is about: the new one (issued), the last one lost, or the
    one replaced (its successor is the active card, in ``permit``)."""
    wanted = {"card_issued": "active", "card_lost": "lost", "card_replaced": "replaced"}.get(kind)
    if wanted is None:
        return None
    for card in reversed(record.cards):
        if card.status == wanted:
            return {"cn": card.cn, "status": card.status}
    return None


def _body(event_type: str, timestamp: float, data: dict[str, Any]) -> bytes:
    return _encode({"type": event_type, "timestamp": rfc3339(timestamp), "data": data})


def change_body(entry: ChangeEntry, fields: Sequence[str], employer_change: str = "") -> bytes:
    """The message of one change for a subscription that sees ``fields``.

    ``employer_change``: ``"left"`` for a partner whose employer the permit moved away
    from (then nothing but the permit number: the permit is another employer's now),
    ``"joined"`` for the new employer's partner; ``""`` otherwise.
    """
    record = entry.record
    assert record is not None
    data: dict[str, Any] = {"pn": entry.pn, "seq": entry.seq}
    if employer_change:
        data["employer_change"] = employer_change
    if employer_change == "left":
        data["permit"] = {"pn": entry.pn}
    else:
        data["permit"] = permit_view(record, fields)
        if entry.previous_employer and not employer_change and "emp" in fields:
            data["previous_emp"] = entry.previous_employer
        card = _card_of_event(entry.kind, record) if "cn" in fields else None
        if card is not None:
            data["card"] = card
    return _body(CHANGE_TYPES[entry.kind], entry.time, data)  # type: ignore[index]


def last_day_to_apply(vt: str) -> dt.date:
    """An extension must be applied for at least 30 days before the permit ends."""
    return dt.date.fromisoformat(vt) - dt.timedelta(days=30)


def expiring_body(record: PermitRecord, days: int, days_left: int, fields: Sequence[str], now: float) -> bytes:
    data = {
        "pn": record.pn,
        "vt": record.vt,
        "days_before_end": days,
        "days_left": days_left,
        "last_day_to_apply": last_day_to_apply(record.vt).isoformat(),
        "permit": permit_view(record, fields),
    }
    return _body(EXPIRING, now, data)


def verified_body(pn: str, at: float, result: str, by_role: str, terminal: str, kind: str) -> bytes:
    data = {"pn": pn, "result": result, "by_role": by_role, "method": kind}
    if terminal:
        data["terminal"] = terminal
    return _body(VERIFIED, at, data)


def gap_body(first: int | None, last: int, now: float, *, feed_reset: bool) -> bytes:
    """``first`` None: unknown (the feed was reset, or the notifier never knew where it was)."""
    data: dict[str, Any] = {"last_seq": last, "feed_reset": feed_reset,
                            "action": "look your permits up again (POST /v1/permits/lookup); "
                                      "changes in this range were applied without a message"}
    if first is not None:
        data["first_seq"] = first
    return _body(GAP, now, data)
