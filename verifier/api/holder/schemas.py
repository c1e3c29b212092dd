"""Request and response bodies of the holder services (the e-card platform's API)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from verifier.api.qr.schemas import QrText
from verifier.api.verdicts.schemas import IndexAsOf, PermitView

DateOfBirth = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="Date of birth, YYYY-MM-DD.")]
Identifier = Annotated[str, Meta(min_length=1, max_length=64)]


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: QrText
    """A fresh `ES1:` dynamic code the e-card app just showed for the holder (after its face check)."""


class SessionOut(msgspec.Struct):
    token: str
    """The holder token: send it as `X-Holder-Token` with the platform's own API key. Opaque."""
    expires_at: str
    """When it stops working (RFC 3339, UTC); `DELETE /v1/holder/session` ends it sooner."""
    result: str
    """The sign-in code's verdict: VALID, or the permit status the holder can still read about
    (PERMIT_CANCELLED, PERMIT_EXPIRED, SUPERSEDED)."""


class MatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    json_schema_extra: ClassVar[dict[str, Any]] = {"anyOf": [{"required": ["pn"]}, {"required": ["ssn"]}]}
    """pn, or ssn, or both (then they must name the same permit)."""

    name: Annotated[str, Meta(min_length=1, max_length=200, description="The name as the person gives it.")]
    dob: DateOfBirth
    pn: Identifier | msgspec.UnsetType = msgspec.UNSET
    """Work permit number (give this or `ssn`)."""
    ssn: Identifier | msgspec.UnsetType = msgspec.UNSET
    """Social security number (give this or `pn`)."""


MatchReason = Literal["match.identifier_unknown", "match.name_differs", "match.dob_differs"]


class MatchOut(msgspec.Struct):
    result: Literal["match", "no_match"]
    reasons: list[MatchReason]
    """Which of identifier, name and date of birth did not match (codes only, never data);
    empty on a match. An unknown identifier says only that."""


class CardOut(msgspec.Struct):
    cn: str
    """Social security card number."""
    status: Literal["active", "lost", "replaced"]


class HolderPermitOut(msgspec.Struct):
    permit: PermitView
    """The holder's permit, every field the index has, its status and the active card's."""
    cards: list[CardOut]
    """Every card that carried the permit, the lost and replaced ones too."""
    index_as_of: IndexAsOf
    lag_s: float
    """Seconds since the sync job last confirmed the index (how fresh this is)."""


Kind = Literal["qr", "card", "manual", "lookup", "sign_in", "registration_check"]


class VerificationItem(msgspec.Struct):
    time: str
    """When (RFC 3339, UTC)."""
    organisation: str
    """Who: the organisation of the API key that checked, by its registered name."""
    terminal: str | None
    """Which terminal: its registered name, else the id the organisation's system sent; null when none."""
    place: str | None
    """Where that terminal stands, when it is registered."""
    kind: Kind
    """qr (a scan of the printed notice or the e-card code), card (a card read), manual (permit
    number and date of birth typed in), lookup (a look-up by a partner or an agency's system),
    sign_in (an e-card sign-in), registration_check (a real-name match for e-card registration)."""
    code: Literal["WP1", "ES1"] | None
    """For qr: which code was scanned (WP1 the printed notice, ES1 the e-card's)."""
    result: str
    """The answer given: a verdict result code (VALID, PERMIT_CANCELLED, ...), `found` for a
    look-up, `match` or `no_match` for a registration check."""


class VerificationsOut(msgspec.Struct):
    items: list[VerificationItem]
    """Newest first."""
    next: str | None
    """Pass as `cursor` for the next (older) page; null on the last page."""
