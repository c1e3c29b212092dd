"""The verdict: what a verification answers, defined once for both twins."""

from __future__ import annotations

import base64
from typing import Any, NamedTuple

from . import codes


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class StatusRef(NamedTuple):
    """Where a token's status is published (WIRE-FORMAT 8, the CWT claim 65535
    ``{"status_list": {"idx": idx, "uri": uri}}``): entry ``idx`` of the Status
    List at ``uri``. A tuple, so ``ref == (uri, idx)``; a WP1/ES1 token points
    into the ``permits`` list, a card certificate into ``cards``."""

    uri: str
    idx: int


class Verdict:
    """The answer to one verification (WIRE-FORMAT 7): a result code and its reasons.

    Built as ``Verdict(result, reasons, profile, claims=..., kid=...)``: the
    fields after ``profile`` are keyword-only, so that no caller counts Nones.

    - ``result``: a code from :mod:`fastpath.codes`.
    - ``reasons``: empty for VALID, else the reason(s) of the first failing check.
    - ``profile``: ``WP1``, ``ES1``, ``CARD``, or None when the prefix was not recognised.
    - ``claims``: the CWT claims by name (``iss``, ``exp``, ``iat``, and ``nbf``,
      ``cti`` when present), once they passed their checks; kept when a later
      check (issuer, times, card signature) fails.
    - ``permit``: the permit map (-70001, known keys only), or for a card the
      ``cn``, ``ssn`` and ``pn`` of the -70002 map.
    - ``card_public_key``: the card's 32-byte key (CARD only).
    - ``kid``: the 8-byte key id, once the header was read.
    - ``status_ref``: the token's status claim (65535) as a :class:`StatusRef`,
      or None when the token has none; kept with ``claims`` (a token whose
      claim is there but malformed is MALFORMED).
    - ``cached``: the checks before the time checks came from the verdict cache.
      Not part of equality: a cached verdict equals the one computed afresh.
    """

    __slots__ = ("result", "reasons", "profile", "claims", "permit", "card_public_key", "kid", "status_ref",
                 "cached")

    result: str
    reasons: tuple[str, ...]
    profile: str | None
    claims: dict[str, Any] | None
    permit: dict[str, Any] | None
    card_public_key: bytes | None
    kid: bytes | None
    status_ref: StatusRef | None
    cached: bool

    def __init__(
        self,
        result: str,
        reasons: tuple[str, ...] = (),
        profile: str | None = None,
        *,
        claims: dict[str, Any] | None = None,
        permit: dict[str, Any] | None = None,
        card_public_key: bytes | None = None,
        kid: bytes | None = None,
        status_ref: StatusRef | None = None,
        cached: bool = False,
    ) -> None:
        self.result = result
        self.reasons = reasons
        self.profile = profile
        self.claims = claims
        self.permit = permit
        self.card_public_key = card_public_key
        self.kid = kid
        self.status_ref = status_ref
        self.cached = cached

    @property
    def ok(self) -> bool:
        """True only for VALID."""
        return self.result == codes.VALID

    def _key(self) -> tuple[Any, ...]:
        return (self.result, self.reasons, self.profile, self.claims, self.permit,
                self.card_public_key, self.kid, self.status_ref)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable dicts inside: not hashable

    def __repr__(self) -> str:
        # No permit fields here, nor the status_ref (its idx names one permit's entry): a
        # repr ends up in logs, and the permit is personal data.
        return (f"Verdict(result={self.result!r}, reasons={self.reasons!r}, "
                f"profile={self.profile!r}, kid={self.kid.hex() if self.kid else None!r}, "
                f"cached={self.cached!r})")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy: bytes as unpadded base64url, reasons as a list."""
        claims = None
        if self.claims is not None:
            claims = {name: _b64url(value) if isinstance(value, bytes) else value
                      for name, value in self.claims.items()}
        return {
            "result": self.result,
            "reasons": list(self.reasons),
            "profile": self.profile,
            "claims": claims,
            "permit": dict(self.permit) if self.permit is not None else None,
            "card_public_key": _b64url(self.card_public_key) if self.card_public_key is not None else None,
            "kid": _b64url(self.kid) if self.kid is not None else None,
            "status_ref": ({"uri": self.status_ref.uri, "idx": self.status_ref.idx}
                           if self.status_ref is not None else None),
            "cached": self.cached,
        }
