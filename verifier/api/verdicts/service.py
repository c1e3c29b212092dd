"""From a scanned code, a card read or a manual entry to the verdict the caller is shown.

The order is WIRE-FORMAT 7's: fastpath (prefix ... times), then the status checks
of WIRE-FORMAT 5 against the index (status.py), then, for ES1, the replay guard.
The lean path for a repeated static code: fastpath's verdict cache, the near-cache,
no Redis round trip.

What a verdict shows of the permit: nothing until the token's signature and times
held (``permit`` is null for MALFORMED ... EXPIRED); after that the token's data
(with the index's status of the permit and card), also when a status check fails,
so that the officer knows whose permit is cancelled or whose code was replayed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

import fastpath
from fastpath import codes
from verifier.api.audit.log import AuditLog
from verifier.api.auth.keys import Caller
from verifier.api.cards.challenges import ChallengeStore
from verifier.api.receipts.signer import ReceiptSigner
from verifier.api.trust.service import TrustHolder
from verifier.api.verdicts.index_view import IndexState, IndexUnavailableError, IndexView
from verifier.api.verdicts.replay import ReplayGuard
from verifier.api.verdicts.schemas import PermitView, VerdictOut
from verifier.api.verdicts.status import (
    R_CHALLENGE_UNKNOWN,
    R_INDEX_BEHIND,
    R_MANUAL_NO_MATCH,
    R_REPLAYED,
    R_TRUST_UNAVAILABLE,
    R_UNAVAILABLE,
    R_UPSTREAM_REGRESSED,
    check_permit,
    cst_today,
    rfc3339,
)
from verifier.api.verdicts.views import ViewSpec, view_spec
from verifier.index.records import PermitRecord
from verifier.index.regression import floor_of
from verifier.lib.metrics import Metrics
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = ["PROFILE_MANUAL", "ReceiptHolder", "Verifications"]

PROFILE_MANUAL = "MANUAL"
# check_card_signature's reasons and the results they give (WIRE-FORMAT 6)
_CARD_REASON_RESULTS = {
    codes.R_CARD_SIGNATURE: codes.BAD_SIGNATURE,
    codes.R_CARD_SIGNATURE_LENGTH: codes.MALFORMED,
    codes.R_CARD_CHALLENGE: codes.CHALLENGE_INVALID,
}


class ReceiptHolder:
    """The receipt signer, once loaded (it needs Redis; until then verdicts go out unsigned)."""

    __slots__ = ("signer",)

    def __init__(self) -> None:
        self.signer: ReceiptSigner | None = None


class _Answer:
    """One verification's context: who asked, from where, what kind, and when."""

    __slots__ = ("service", "caller", "terminal", "kind", "receipt", "now", "spec", "double_reads")

    def __init__(
        self, service: "Verifications", caller: Caller, terminal: str, kind: str, receipt: bool,
        double_reads: bool = True,
    ) -> None:
        self.service = service
        self.caller = caller
        self.terminal = terminal
        self.kind = kind
        self.receipt = receipt
        self.double_reads = double_reads
        """False: an ES1 code read twice is REPLAYED the second time even from the same
        terminal within DOUBLE_READ_S (a holder sign-in: one code, one session)."""
        self.now = time.time()
        self.spec: ViewSpec = view_spec(caller.role, caller.full_fields)

    def give(
        self,
        result: str,
        reasons: Sequence[str],
        profile: str | None,
        permit: PermitView | None = None,
        state: IndexState | None = None,
        *,
        repeat: bool = False,
        permit_number: str = "",
    ) -> VerdictOut:
        """Shape the verdict, count it, audit it, sign it if asked."""
        now = self.now
        out = VerdictOut(
            result=result,  # type: ignore[arg-type]
            reasons=list(reasons),
            profile=profile,  # type: ignore[arg-type]
            permit=permit,
            checked_at=rfc3339(now),
            index_as_of=state.as_of if state is not None else None,
            lag_s=round(now - state.confirmed_at, 3) if state is not None and state.confirmed_at else None,
            repeat=repeat,
        )
        service = self.service
        service.metrics.inc("pv_verdicts", (profile or "none", result))
        caller = self.caller
        service.audit.record(
            key_id=caller.key_id, role=caller.role, kind=self.kind, result=result, terminal=self.terminal,
            profile=profile or "", permit_number=permit.pn if permit is not None else permit_number,
        )
        if self.receipt and (signer := service.receipts.signer) is not None:
            out.receipt = signer.sign(msgspec.to_builtins(out))
        return out


class Verifications:
    """One worker's verification service: what the qr, cards and permits controllers call."""

    def __init__(
        self,
        *,
        trust: TrustHolder,
        index: IndexView,
        replay: ReplayGuard,
        challenges: ChallengeStore,
        audit: AuditLog,
        metrics: Metrics,
        receipts: ReceiptHolder,
    ) -> None:
        self.trust = trust
        self.index = index
        self.replay = replay
        self.challenges = challenges
        self.audit = audit
        self.metrics = metrics
        self.receipts = receipts

    # --- QR codes ----------------------------------------------------------
    async def qr(
        self, text: str, caller: Caller, terminal: str, receipt: bool, *, kind: str = "qr", double_reads: bool = True
    ) -> VerdictOut:
        """``kind``: what the audit calls this check (a holder's sign-in is ``sign_in``);
        ``double_reads``: see :class:`_Answer`."""
        answer = _Answer(self, caller, terminal, kind, receipt, double_reads)
        trust = self.trust.current
        if trust is None:
            return answer.give(codes.STATUS_UNAVAILABLE, (R_TRUST_UNAVAILABLE,), _profile_of(text))
        verdict = self._fastpath(text, trust, answer.now)
        if verdict.result != codes.VALID:
            return answer.give(verdict.result, verdict.reasons, verdict.profile)
        permit: dict[str, Any] = verdict.permit  # type: ignore[assignment]
        try:
            record, state = await self.index.permit(permit["pn"], answer.now)
        except IndexUnavailableError as exc:
            return answer.give(codes.STATUS_UNAVAILABLE, (exc.reason,), verdict.profile,
                               answer.spec.of_token(permit, None), exc.state)
        return await self._token_status(answer, verdict, record, state)

    async def qr_batch(self, texts: Sequence[str], caller: Caller, terminal: str, receipt: bool) -> list[VerdictOut]:
        """Verdicts in the order of ``texts``; the records of all good tokens are read in one round trip."""
        answer = _Answer(self, caller, terminal, "qr", receipt)
        trust = self.trust.current
        if trust is None:
            return [answer.give(codes.STATUS_UNAVAILABLE, (R_TRUST_UNAVAILABLE,), _profile_of(t)) for t in texts]
        verdicts = [self._fastpath(text, trust, answer.now) for text in texts]
        wanted = [v.permit["pn"] for v in verdicts if v.result == codes.VALID]  # type: ignore[index]
        unavailable: IndexUnavailableError | None = None
        records: dict[str, PermitRecord | None] = {}
        state: IndexState | None = None
        if wanted:
            try:
                records, state = await self.index.permits(wanted, answer.now)
            except IndexUnavailableError as exc:
                unavailable = exc
        out = []
        for verdict in verdicts:
            if verdict.result != codes.VALID:
                out.append(answer.give(verdict.result, verdict.reasons, verdict.profile))
            elif unavailable is not None:
                out.append(answer.give(codes.STATUS_UNAVAILABLE, (unavailable.reason,), verdict.profile,
                                       answer.spec.of_token(verdict.permit, None), unavailable.state))  # type: ignore[arg-type]
            else:
                record = records.get(verdict.permit["pn"])  # type: ignore[index]
                out.append(await self._token_status(answer, verdict, record, state))  # type: ignore[arg-type]
        return out

    def _fastpath(self, text: str, trust: fastpath.TrustList, now: float) -> fastpath.Verdict:
        verdict = fastpath.verify_qr(text, trust, int(now))
        if verdict.profile == codes.PROFILE_WP1:  # only static codes are cached
            self.metrics.inc("pv_signature_cache", ("hit" if verdict.cached else "miss",))
        return verdict

    async def _token_status(
        self, answer: _Answer, verdict: fastpath.Verdict, record: PermitRecord | None, state: IndexState
    ) -> VerdictOut:
        permit: dict[str, Any] = verdict.permit  # type: ignore[assignment]
        view = answer.spec.of_token(permit, record)
        failed = check_permit(record, cst_today(answer.now), token_version=permit["v"], card_number=permit.get("cn"))
        if failed is not None and failed[1] == (R_INDEX_BEHIND,):
            failed = await self._behind_or_regressed(permit, failed)
        if failed is not None:
            return answer.give(failed[0], failed[1], verdict.profile, view, state)
        repeat = False
        if verdict.profile == codes.PROFILE_ES1:
            claims: dict[str, Any] = verdict.claims  # type: ignore[assignment]
            reader = f"{answer.caller.key_id}/{answer.terminal}"
            try:
                outcome = await self.replay.accept(claims["cti"], claims["exp"], reader, answer.now)
            except REDIS_UNAVAILABLE:
                return answer.give(codes.STATUS_UNAVAILABLE, (R_UNAVAILABLE,), verdict.profile, view, state)
            if outcome == "replayed" or (outcome == "repeat" and not answer.double_reads):
                return answer.give(codes.REPLAYED, (R_REPLAYED,), verdict.profile, view, state)
            repeat = outcome == "repeat"
        return answer.give(codes.VALID, (), verdict.profile, view, state, repeat=repeat)

    async def _behind_or_regressed(self, permit: dict[str, Any], failed: tuple[str, tuple[str, ...]]
                                   ) -> tuple[str, tuple[str, ...]]:
        """A token above the index's version: behind, unless an accepted upstream regression
        took that version away (verifier.index.regression): then the code is superseded."""
        try:
            floor = await floor_of(self.index.index.redis, permit["pn"])
        except REDIS_UNAVAILABLE:
            return failed
        if floor is not None and permit["v"] <= floor:
            return codes.SUPERSEDED, (R_UPSTREAM_REGRESSED,)
        return failed

    # --- card reads --------------------------------------------------------
    async def card(
        self, certificate: bytes, challenge: bytes, signature: bytes, caller: Caller, terminal: str, receipt: bool
    ) -> VerdictOut:
        """WIRE-FORMAT 6: certificate -> challenge (consumed atomically) -> card signature -> status."""
        answer = _Answer(self, caller, terminal, "card", receipt)
        profile = codes.PROFILE_CARD
        trust = self.trust.current
        if trust is None:
            return answer.give(codes.STATUS_UNAVAILABLE, (R_TRUST_UNAVAILABLE,), profile)
        verdict = fastpath.verify_card_certificate(certificate, trust, int(answer.now))
        try:
            # Any attempt uses the challenge up, good or bad: it is single-use.
            fresh: bool | None = await self.challenges.consume(challenge, caller.key_id)
        except REDIS_UNAVAILABLE:
            fresh = None
        if verdict.result != codes.VALID:
            return answer.give(verdict.result, verdict.reasons, profile)
        if fresh is None:
            return answer.give(codes.STATUS_UNAVAILABLE, (R_UNAVAILABLE,), profile)
        if not fresh:
            return answer.give(codes.CHALLENGE_INVALID, (R_CHALLENGE_UNKNOWN,), profile)
        reason = fastpath.check_card_signature(verdict.card_public_key, challenge, signature)  # type: ignore[arg-type]
        if reason is not None:
            return answer.give(_CARD_REASON_RESULTS.get(reason, codes.MALFORMED), (reason,), profile)
        card: dict[str, Any] = verdict.permit  # type: ignore[assignment]
        try:
            record, state = await self.index.permit(card["pn"], answer.now)
        except IndexUnavailableError as exc:
            return answer.give(codes.STATUS_UNAVAILABLE, (exc.reason,), profile,
                               answer.spec.of_token(card, None), exc.state)
        failed = check_permit(record, cst_today(answer.now), card_number=card["cn"])
        result, reasons = failed if failed is not None else (codes.VALID, ())
        # the certificate holds no name: the index's record says whose card this is
        view = answer.spec.of_record(record, card["cn"]) if record is not None else answer.spec.of_token(card, None)
        return answer.give(result, reasons, profile, view, state)

    # --- manual entry ------------------------------------------------------
    async def manual(self, permit_number: str, dob: str, caller: Caller, terminal: str, receipt: bool) -> VerdictOut:
        """Nothing to scan: the permit number and date of birth, checked against the index alone."""
        answer = _Answer(self, caller, terminal, "manual", receipt)
        try:
            record, state = await self.index.permit(permit_number, answer.now)
        except IndexUnavailableError as exc:
            return answer.give(codes.STATUS_UNAVAILABLE, (exc.reason,), PROFILE_MANUAL, None, exc.state,
                               permit_number=permit_number)
        if record is None or record.dob != dob:
            # A wrong date of birth gets the answer of an unknown number: it must not confirm that the number exists.
            return answer.give(codes.PERMIT_NOT_FOUND, (R_MANUAL_NO_MATCH,), PROFILE_MANUAL, None, state,
                               permit_number=permit_number)
        failed = check_permit(record, cst_today(answer.now))
        result, reasons = failed if failed is not None else (codes.VALID, ())
        return answer.give(result, reasons, PROFILE_MANUAL, answer.spec.of_record(record), state)


def _profile_of(text: str) -> str | None:
    if text.startswith("WP1:"):
        return codes.PROFILE_WP1
    if text.startswith("ES1:"):
        return codes.PROFILE_ES1
    return None
