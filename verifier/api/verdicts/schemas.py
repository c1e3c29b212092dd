"""The verdict as answered over HTTP, and the permit as shown to a role."""

from __future__ import annotations

from typing import Literal

import msgspec

from verifier.api.receipts.signer import Receipt

ResultCode = Literal[
    "VALID", "MALFORMED", "UNSUPPORTED", "UNKNOWN_KEY", "KEY_REVOKED", "BAD_SIGNATURE",
    "NOT_YET_VALID", "EXPIRED", "PERMIT_NOT_FOUND", "PERMIT_CANCELLED", "PERMIT_EXPIRED",
    "SUPERSEDED", "CARD_INVALID", "REPLAYED", "CHALLENGE_INVALID", "STATUS_UNAVAILABLE",
]
Profile = Literal["WP1", "ES1", "CARD", "MANUAL"]


class PermitView(msgspec.Struct, omit_defaults=True):
    """A permit as the caller's role may see it (auth/roles.py): absent fields are not for this role."""

    pn: str
    """Work permit number."""
    status: Literal["active", "cancelled"] | None = None
    """From the index: active or cancelled."""
    cat: str | None = None
    emp: str | None = None
    """Employer's unified social credit code."""
    vf: str | None = None
    """Valid from (YYYY-MM-DD, China Standard Time), inclusive."""
    vt: str | None = None
    """Valid to (YYYY-MM-DD, China Standard Time), inclusive."""
    n: str | None = None
    """Name in Latin letters."""
    nat: str | None = None
    dob: str | None = None
    v: int | None = None
    """Version of the permit record."""
    ssn: str | None = None
    cn: str | None = None
    """The card number: the card read or the token's, else the active card's."""
    card_status: Literal["active", "lost", "replaced"] | None = None


class IndexAsOf(msgspec.Struct):
    """How fresh the index behind a status was."""

    seq: int | None
    """The upstream change-feed sequence the index is consistent with (null when unknown)."""
    time: str | None
    """When the sync job last confirmed the index (RFC 3339), null when unknown."""


class VerdictOut(msgspec.Struct, omit_defaults=True):
    """A verdict: an answer (HTTP 200), not an error, whatever its result (WIRE-FORMAT 7)."""

    result: ResultCode
    reasons: list[str]
    """Machine-readable reasons of the first failing check; empty for VALID."""
    profile: Profile | None
    permit: PermitView | None
    """The permit, fields chosen by the caller's role; null before the token's signature held."""
    checked_at: str
    """When the service gave this verdict (RFC 3339, UTC)."""
    index_as_of: IndexAsOf | None
    """The index state the status came from; null when no status was read."""
    lag_s: float | None
    """Seconds between the sync job's last confirmation of the index and checked_at; null when unknown."""
    repeat: bool = False
    """True when this is a scanner's double read of an ES1 code within 10 s, answered again."""
    receipt: Receipt | None = None
    """Present when the request asked for one: the service's signature over this verdict."""
