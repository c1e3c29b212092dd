"""The holder services: what the e-card platform does on a signed-in holder's behalf.

- Sign-in: the holder's fresh ES1 code is verified exactly as a scan (the
  verification service: signature, times, status, single use), audited as a
  ``sign_in``; VALID, and the statuses a holder must still be able to read about
  (PERMIT_CANCELLED, PERMIT_EXPIRED, SUPERSEDED), give a holder token bound to that
  permit and to the platform key (sessions.py); any other verdict a problem document
  naming it. A code read twice is REPLAYED even within a scanner's double-read window:
  one code, one session.
- The holder's permit (the index's record), its notice (from the upstream: the service
  never signs), and "who verified me" (the audit's per-permit index,
  verifier/api/audit/history.py) with organisations and terminals by name.
- The real-name match of e-card registration (matching.py), rate-limited per platform
  key and per identifier so that it cannot be used to enumerate people.

Every call is audited under the platform key (kinds ``sign_in``, ``match``, and
``holder_*`` for the holder's own reads, which "who verified me" does not list). No
answer carries another person's data: a token reads its own permit only, a cursor
pages its own list only, a match answers with reason codes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import fastpath
from fastpath import codes
from verifier.api.audit.export import parse_since
from verifier.api.audit.history import Cursor, CursorError, HistoryPolicy, read_history
from verifier.api.audit.log import AuditLog
from verifier.api.auth.keys import Caller, organisations_of
from verifier.api.auth.terminals import terminal_names
from verifier.api.holder.matching import match_reasons, normalise_identifier
from verifier.api.holder.notice import notice_pdf, qr_png
from verifier.api.holder.schemas import (
    CardOut,
    HolderPermitOut,
    MatchOut,
    MatchRequest,
    SessionOut,
    VerificationItem,
    VerificationsOut,
)
from verifier.api.holder.sessions import HolderSession, HolderSessions, SessionRefused
from verifier.api.holder.upstream import NoNotice, NoticeClient, NoticeUnavailable
from verifier.api.ratelimit.limiter import RateLimiter, retry_after
from verifier.api.trust.service import TrustHolder
from verifier.api.verdicts.index_view import IndexUnavailableError, IndexView
from verifier.api.verdicts.service import Verifications
from verifier.api.verdicts.status import R_REPLAYED, rfc3339
from verifier.api.verdicts.views import view_spec
from verifier.lib.problems import Problem
from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = ["NOTICE_FORMATS", "HolderService", "SESSION_RESULTS"]

log = logging.getLogger("verifier.holder")

SESSION_RESULTS = frozenset({codes.VALID, codes.PERMIT_CANCELLED, codes.PERMIT_EXPIRED, codes.SUPERSEDED})
"""Verdicts of a sign-in code that open a session: the holder may read about their own
cancelled, ended or since-changed permit."""
NOTICE_FORMATS = ("application/pdf", "image/png", "text/plain")
SIGN_IN_TERMINAL = ""
"""The e-card platform names no terminal: the app on the holder's phone is the reader."""

# audit kind -> what "who verified me" calls the check
_KINDS = {"qr": "qr", "card": "card", "manual": "manual", "permit": "lookup", "lookup": "lookup",
          "sign_in": "sign_in", "match": "registration_check"}
_PROFILES = {"WP1": "WP1", "ES1": "ES1"}

_REFUSED = "/problems/holder-sign-in-refused"
_REFUSED_TITLE = "The code does not sign the holder in"
_TOKEN = "/problems/holder-token"
_TOKEN_TITLE = "Missing or invalid holder token"
_TOKEN_DETAIL = {
    "missing": "Send the holder token of POST /v1/holder/session in X-Holder-Token.",
    "malformed": "X-Holder-Token is not a holder token (pvh_ and 43 characters).",
    "unknown": "The holder token is unknown or was ended (or was made with another platform key); sign in again.",
    "expired": "The holder token has expired; sign in again with a fresh e-card code.",
}
_UNAVAILABLE = {"Retry-After": "1"}
NAMES_TTL_S = 5.0
"""How long a worker reuses the organisation and terminal names it read (a rename shows within this)."""
_NAMES_LIMIT = 50_000


class _Names:
    """One worker's recently read names: organisation by key id, (name, place) by (organisation,
    terminal id); a name that was not there is remembered as None. Saves a page of "who verified me"
    two of its four Redis round trips."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[float, Any]] = {}

    def known(self, wanted: Iterable[Any], now: float) -> tuple[dict[Any, Any], list[Any]]:
        found, missing = {}, []
        for key in dict.fromkeys(wanted):
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] <= NAMES_TTL_S:
                if entry[1] is not None:
                    found[key] = entry[1]
            else:
                missing.append(key)
        return found, missing

    def learn(self, asked: list[Any], found: dict[Any, Any], now: float) -> None:
        if len(self._entries) + len(asked) > _NAMES_LIMIT:
            self._entries.clear()
        for key in asked:
            self._entries[key] = (now, found.get(key))

    async def resolve(self, wanted: Iterable[Any], read: Any, now: float) -> dict[Any, Any]:
        found, missing = self.known(wanted, now)
        if missing:
            fresh = await read(missing)
            self.learn(missing, fresh, now)
            found.update(fresh)
        return found


def _index_problem(exc: IndexUnavailableError) -> Problem:
    return Problem(503, f"The permit index cannot answer now ({exc.reason}); retry shortly.", headers=_UNAVAILABLE)


def _store_problem() -> Problem:
    return Problem(503, "The session store cannot be reached; retry shortly.", headers=_UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class NoticeFile:
    body: bytes
    media_type: str
    filename: str | None


class HolderService:
    def __init__(
        self,
        *,
        store: AsyncRedisClient,
        verifications: Verifications,
        index: IndexView,
        audit: AuditLog,
        trust: TrustHolder,
        sessions: HolderSessions,
        notices: NoticeClient,
        history: HistoryPolicy,
        match_per_key: RateLimiter,
        match_per_identifier: RateLimiter,
    ) -> None:
        self.store = store
        """The store of record: "who verified me", organisations and terminals."""
        self.verifications = verifications
        self.index = index
        self.audit = audit
        self.trust = trust
        self.sessions = sessions
        self.notices = notices
        self.history = history
        self.match_per_key = match_per_key
        self.match_per_identifier = match_per_identifier
        self._names = _Names()

    async def aclose(self) -> None:
        await self.match_per_key.aclose()
        await self.match_per_identifier.aclose()
        await self.notices.aclose()

    def _audit(self, caller: Caller, kind: str, result: str, permit_number: str = "", profile: str = "",
               **extra: str) -> None:
        self.audit.record(key_id=caller.key_id, role=caller.role, kind=kind, result=result,
                          permit_number=permit_number, profile=profile, **extra)

    # --- sessions ----------------------------------------------------------
    async def sign_in(self, code: str, caller: Caller) -> SessionOut:
        if not code.startswith("ES1:"):
            self._audit(caller, "sign_in", "refused.not_es1")
            raise Problem(403, "Sign-in takes the e-card's dynamic code (ES1:...): a printed notice's code "
                          "proves nobody's presence.", type=_REFUSED, title=_REFUSED_TITLE)
        verdict = await self.verifications.qr(code, caller, SIGN_IN_TERMINAL, False, kind="sign_in",
                                              double_reads=False)
        if verdict.result == codes.STATUS_UNAVAILABLE:
            raise Problem(503, "The code's status cannot be confirmed now (STATUS_UNAVAILABLE); sign in again shortly "
                          "with a fresh code.", headers=_UNAVAILABLE, type=_REFUSED, title=_REFUSED_TITLE,
                          result=verdict.result, reasons=verdict.reasons)
        if verdict.result not in SESSION_RESULTS or verdict.permit is None:
            raise Problem(403, f"The code's verdict is {verdict.result}: no session. Sign in with a fresh code from "
                          "the e-card app.", type=_REFUSED, title=_REFUSED_TITLE, result=verdict.result,
                          reasons=verdict.reasons)
        now = time.time()
        if verdict.result != codes.VALID and not await self._consume(code, caller, now):
            # the verification stopped at the permit's status, before the replay guard: a code
            # that opens a session is used up all the same, so a second sign-in is a replay
            self._audit(caller, "sign_in", codes.REPLAYED, verdict.permit.pn, profile=codes.PROFILE_ES1)
            raise Problem(403, "The code's verdict is REPLAYED: no session. Sign in with a fresh code from the "
                          "e-card app.", type=_REFUSED, title=_REFUSED_TITLE, result=codes.REPLAYED,
                          reasons=[R_REPLAYED])
        try:
            token, expires_at = await self.sessions.create(verdict.permit.pn, caller.key_id, now)
        except REDIS_UNAVAILABLE:
            raise _store_problem() from None
        return SessionOut(token=token, expires_at=rfc3339(expires_at), result=verdict.result)

    async def _consume(self, code: str, caller: Caller, now: float) -> bool:
        """Use up the ES1 code's cti (its signature and times held: the verdict said so); False
        when it was used before. Raises Problem 503 when the replay guard cannot be asked."""
        trust = self.trust.current
        checked = fastpath.verify_qr(code, trust, int(now)) if trust is not None else None
        claims = checked.claims if checked is not None else None
        if not claims or "cti" not in claims:
            raise Problem(503, "The code cannot be checked again now; retry shortly.", headers=_UNAVAILABLE)
        try:
            outcome = await self.verifications.replay.accept(claims["cti"], claims["exp"], caller.key_id + "/",
                                                             now)
        except REDIS_UNAVAILABLE:
            raise _store_problem() from None
        return outcome == "first"

    async def session_of(self, token: str | None, caller: Caller) -> HolderSession:
        try:
            return await self.sessions.resolve(token, caller.key_id, time.time())
        except SessionRefused as refused:
            raise Problem(401, _TOKEN_DETAIL[refused.why], type=_TOKEN, title=_TOKEN_TITLE) from None
        except REDIS_UNAVAILABLE:
            raise _store_problem() from None

    async def sign_out(self, session: HolderSession, caller: Caller) -> None:
        try:
            await self.sessions.end(session)
        except REDIS_UNAVAILABLE:
            raise _store_problem() from None
        self._audit(caller, "holder_sign_out", "ended", session.permit_number)

    # --- the holder's permit and notice ------------------------------------
    async def permit(self, session: HolderSession, caller: Caller) -> HolderPermitOut:
        now = time.time()
        try:
            record, state = await self.index.permit(session.permit_number, now)
        except IndexUnavailableError as exc:
            raise _index_problem(exc) from None
        self._audit(caller, "holder_permit", "found" if record is not None else "missing", session.permit_number)
        if record is None:
            raise Problem(404, "The permit is no longer in the permit index.")
        assert state.confirmed_at is not None
        return HolderPermitOut(
            permit=view_spec(caller.role).of_record(record),
            cards=[CardOut(cn=card.cn, status=card.status) for card in record.cards],
            index_as_of=state.as_of,
            lag_s=round(now - state.confirmed_at, 3),
        )

    async def notice(self, session: HolderSession, caller: Caller, media_type: str) -> NoticeFile:
        """The holder's notice in ``media_type`` (one of NOTICE_FORMATS), made from the upstream's signed code."""
        try:
            notice = await self.notices.notice(session.permit_number)
        except NoNotice:
            self._audit(caller, "holder_notice", "none", session.permit_number)
            raise Problem(409, "The permit system issues no notice for this permit (it is cancelled or has ended).") \
                from None
        except NoticeUnavailable as exc:
            log.warning("holder notice: the upstream cannot be asked (%s)", exc)
            raise Problem(503, "The permit system cannot be reached for the notice; retry shortly.",
                          headers=_UNAVAILABLE) from None
        # Hand the holder nothing the service would not itself accept for them: their permit, signed.
        trust = self.trust.current
        checked = fastpath.verify_qr(notice.qr, trust, int(time.time())) if trust is not None else None
        if checked is None or checked.result != codes.VALID or checked.permit is None \
                or checked.permit.get("pn") != session.permit_number or checked.profile != codes.PROFILE_WP1:
            log.error("holder notice: the upstream's code did not verify (%s)",
                      checked.result if checked is not None else "no trust list")
            raise Problem(503, "The permit system's notice could not be verified; retry shortly.",
                          headers=_UNAVAILABLE)
        self._audit(caller, "holder_notice", media_type, session.permit_number)
        if media_type == "text/plain":
            return NoticeFile((notice.qr + "\n").encode(), "text/plain; charset=utf-8", None)
        if media_type == "image/png":
            return NoticeFile(qr_png(notice.qr), "image/png", "work-permit-notice.png")
        return NoticeFile(_notice_pdf(checked.permit, notice.qr, notice.issued_at), "application/pdf",
                          "work-permit-notice.pdf")

    # --- who verified me ---------------------------------------------------
    async def verifications_of(
        self, session: HolderSession, caller: Caller, since: str | None, cursor: str | None, limit: int
    ) -> VerificationsOut:
        try:
            since_ms = int(parse_since(since) * 1000) if since is not None else 0  # "since=": a 400
        except (ValueError, OverflowError):
            raise Problem(400, "since is not a time: give an RFC 3339 time, a date (YYYY-MM-DD) or epoch seconds.") \
                from None
        try:
            position = Cursor.decode(cursor, session.permit_number) if cursor is not None else None
        except CursorError as exc:
            if exc.foreign:
                raise Problem(403, f"cursor: {exc}; use the `next` of this holder's own last page.",
                              type="/problems/another-holder", title="This belongs to another holder") from None
            raise Problem(400, f"cursor: {exc}; use the `next` of this holder's own last page.") from None
        try:
            entries, following = await read_history(self.store, session.permit_number, self.history,
                                                    since_ms=max(since_ms, 0), cursor=position, limit=limit)
            now = time.monotonic()
            organisations = await self._names.resolve(
                (e.key_id for e in entries), lambda ids: organisations_of(self.store, ids), now)
            terminals = await self._names.resolve(
                ((organisations.get(e.key_id, ""), e.terminal) for e in entries if e.terminal),
                lambda pairs: terminal_names(self.store, pairs), now)
        except REDIS_UNAVAILABLE:
            raise Problem(503, "The audit cannot be read now; retry shortly.", headers=_UNAVAILABLE) from None
        items = []
        for entry in entries:
            organisation = organisations.get(entry.key_id, "")
            name, place = terminals.get((organisation, entry.terminal), (entry.terminal or None, None))
            items.append(VerificationItem(
                time=rfc3339(entry.time_ms / 1000),
                organisation=organisation or "an organisation no longer known",
                terminal=name,
                place=place,
                kind=_KINDS.get(entry.kind, "lookup"),  # type: ignore[arg-type]
                code=_PROFILES.get(entry.profile) if entry.kind in ("qr", "sign_in") else None,  # type: ignore[arg-type]
                result=entry.result,
            ))
        self._audit(caller, "holder_verifications", f"items={len(items)}", session.permit_number)
        return VerificationsOut(items=items, next=following.encode(session.permit_number) if following else None)

    # --- registration check ------------------------------------------------
    async def match(self, data: MatchRequest, caller: Caller) -> MatchOut:
        """By pn, or by ssn; given both, they must name the same permit (the pair is the identifier)."""
        pn = data.pn if isinstance(data.pn, str) else None
        ssn = data.ssn if isinstance(data.ssn, str) else None
        if pn is None and ssn is None:
            raise Problem(400, "Give pn or ssn.")
        by = "pn" if pn is not None else "ssn"
        identifier = normalise_identifier(pn if pn is not None else ssn)  # type: ignore[arg-type]
        also_ssn = normalise_identifier(ssn) if pn is not None and ssn is not None else None
        wait = await self.match_per_key.acquire("match:" + caller.key_id)
        if wait is not None:
            raise Problem(429, "This platform key is over its rate of real-name matches.",
                          headers={"Retry-After": retry_after(wait)})
        # Per identifier, counted before it is looked up: an unknown one costs the same as a known one.
        tag = hashlib.sha256(f"{by}:{identifier}".encode()).hexdigest()[:32]
        wait = await self.match_per_identifier.acquire("match-id:" + tag)
        if wait is not None:
            raise Problem(429, f"Too many real-name matches for this {by}; retry later.",
                          headers={"Retry-After": retry_after(wait)})
        try:
            # nothing left of it once spaces are gone: it identifies nobody
            found, _state = await self.index.lookup(by, [identifier], time.time()) if identifier else ({}, None)
        except IndexUnavailableError as exc:
            raise _index_problem(exc) from None
        record = found.get(identifier)
        if record is not None and also_ssn is not None and record.ssn != also_ssn:
            record = None  # a pn and an ssn of two permits (or none) identify nobody
        reasons = match_reasons(data.name, data.dob, record.n if record else None, record.dob if record else None)
        result = "no_match" if reasons else "match"
        self._audit(caller, "match", result, record.pn if record is not None else "", by=by)
        return MatchOut(result=result, reasons=reasons)  # type: ignore[arg-type]


def _notice_pdf(permit: dict[str, Any], qr_text: str, issued_at: float) -> bytes:
    """The printed notice: the fields the signed code carries, and the code."""
    fields = [
        ("Name", permit.get("n", "")),
        ("Nationality", permit.get("nat", "")),
        ("Date of birth", permit.get("dob", "")),
        ("Work permit number", permit.get("pn", "")),
        ("Category", permit.get("cat", "")),
        ("Employer (credit code)", permit.get("emp", "")),
        ("Valid from", permit.get("vf", "")),
        ("Valid to", permit.get("vt", "")),
    ]
    issued = dt.datetime.fromtimestamp(issued_at, dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")
    return notice_pdf("Notice of Foreigner's Work Permit", fields, qr_text, [
        f"Signed by the Foreigner Work Management Service System on {issued} (China Standard Time).",
        "Scan the code to verify this notice: the code, not this paper, proves the permit.",
        "Dates are in China Standard Time; the permit is valid on both dates shown.",
    ])
