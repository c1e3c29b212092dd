"""From a scanned code, a card read or a manual entry to the verdict the caller is shown.

The order is WIRE-FORMAT 7's: fastpath (prefix ... times), then the status checks
of WIRE-FORMAT 5 against the index (status.py), then, for ES1, the replay guard.
The lean path for a repeated static code: fastpath's verdict cache, the near-cache,
no Redis round trip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from verifier.api.redis_failures import REDIS_DOWN

import fastpath
from fastpath import codes
from verifier.api.audit.log import AuditLog
from verifier.api.auth.keys import Caller
from verifier.api.auth.roles import permit_fields
from verifier.api.cards.challenges import ChallengeStore
from verifier.api.receipts.signer import ReceiptSigner
from verifier.api.verdicts.index_view import IndexView, IndexUnavailableError
from verifier.api.verdicts.replay import ReplayGuard
from verifier.api.verdicts.schemas import PermitView, VerdictOut
from verifier.api.verdicts.status import (
    R_CHALLENGE_UNKNOWN,
    R_MANUAL_NO_MATCH,
    R_REPLAYED,
    R_TRUST_UNAVAILABLE,
    R_UNAVAILABLE,
    check_permit,
    cst_today,
    rfc3339,
)
from verifier.api.trust.service import TrustHolder
from verifier.index.records import PermitRecord
from verifier.lib.metrics import Metrics

__all__ = ["ReceiptHolder", "Verifications", "permit_view", "record_values"]

PROFILE_MANUAL = "MANUAL"
_CARD_REASON_RESULTS = {
    codes.R_CARD_SIGNATURE: codes.BAD_SIGNATURE,
    codes.R_CARD_SIGNATURE_LENGTH: codes.MALFORMED,
    codes.R_CARD_CHALLENGE: codes.CHALLENGE_INVALID,
}
_FASTPATH_OK = codes.VALID


def permit_view(fields: Sequence[str], values: dict[str, Any]) -> PermitView:
    """The permit as this role may see it: only ``fields``, only known values."""
    return PermitView(**{name: values[name] for name in fields if values.get(name) is not None})


def record_values(record: PermitRecord, card_number: str | None = None) -> dict[str, Any]:
    values = msgspec.structs.asdict(record)
    del values["cards"]
    cn = card_number if card_number is not None else record.cn
    values["cn"] = cn
    values["card_status"] = record.card_status(cn) if cn is not None else None
    return values


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
        receipts: "ReceiptHolder",
    ) -> None:
        self.trust = trust
        self.index = index
        self.replay = replay
        self.challenges = challenges
        self.audit = audit
        self.metrics = metrics
        self.receipts = receipts

    # --- QR codes ----------------------------------------------------------
    async def qr(self, text: str, caller: Caller, terminal: str, receipt: bool) -> VerdictOut:
        trust = self.trust.current
        now = time.time()
        if trust is None:
            return self._finish(
                caller, terminal, "qr", receipt, now,
                codes.STATUS_UNAVAILABLE, (R_TRUST_UNAVAILABLE,), _profile_of(text), None, None,
            )
        verdict = fastpath.verify_qr(text, trust, int(now))
        if verdict.cached:
            self.metrics.inc("pv_signature_cache", ("hit",))
        elif verdict.profile == codes.PROFILE_WP1:
            self.metrics.inc("pv_signature_cache", ("miss",))
        if verdict.result != _FASTPATH_OK:
            return self._finish(caller, terminal, "qr", receipt, now, verdict.result, verdict.reasons,
                                verdict.profile, None, None)
        try:
            record, state = await self.index.permit(verdict.permit["pn"], now)  # type: ignore[index]
        except IndexUnavailableError as exc:
            return self._finish(caller, terminal, "qr", receipt, now, codes.STATUS_UNAVAILABLE,
                                (exc.reason,), verdict.profile, verdict.permit, None, exc.state)
        return await self._token_status(verdict, record, state, caller, terminal, receipt, now)

    async def qr_batch(self, texts: Sequence[str], caller: Caller, terminal: str, receipt: bool) -> list[VerdictOut]:
        """Verdicts in the order of ``texts``; the records of all good tokens are read in one round trip."""
        trust = self.trust.current
        now = time.time()
        if trust is None:
            return [
                self._finish(caller, terminal, "qr", receipt, now, codes.STATUS_UNAVAILABLE,
                             (R_TRUST_UNAVAILABLE,), _profile_of(text), None, None)
                for text in texts
            ]
        verdicts = [fastpath.verify_qr(text, trust, int(now)) for text in texts]
        wanted = [v.permit["pn"] for v in verdicts if v.result == _FASTPATH_OK]  # type: ignore[index]
        unavailable: IndexUnavailableError | None = None
        records: dict[str, PermitRecord | None] = {}
        state = None
        if wanted:
            try:
                records, state = await self.index.permits(wanted, now)
            except IndexUnavailableError as exc:
                unavailable = exc
        out = []
        for verdict in verdicts:
            if verdict.cached:
                self.metrics.inc("pv_signature_cache", ("hit",))
            if verdict.result != _FASTPATH_OK:
                out.append(self._finish(caller, terminal, "qr", receipt, now, verdict.result, verdict.reasons,
                                        verdict.profile, None, None))
            elif unavailable is not None:
                out.append(self._finish(caller, terminal, "qr", receipt, now, codes.STATUS_UNAVAILABLE,
                                        (unavailable.reason,), verdict.profile, verdict.permit, None,
                                        unavailable.state))
            else:
                record = records.get(verdict.permit["pn"])  # type: ignore[index]
                out.append(await self._token_status(verdict, record, state, caller, terminal, receipt, now))
        return out

    async def _token_status(
        self,
        verdict: fastpath.Verdict,
        record: PermitRecord | None,
        state: Any,
        caller: Caller,
        terminal: str,
        receipt: bool,
        now: float,
    ) -> VerdictOut:
        permit: dict[str, Any] = verdict.permit  # type: ignore[assignment]
        failed = check_permit(record, cst_today(now), token_version=permit["v"], card_number=permit.get("cn"))
        if failed is not None:
            return self._finish(caller, terminal, "qr", receipt, now, failed[0], failed[1],
                                verdict.profile, permit, record, state)
        repeat = False
        if verdict.profile == codes.PROFILE_ES1:
            claims: dict[str, Any] = verdict.claims  # type: ignore[assignment]
            try:
                outcome = await self.replay.accept(claims["cti"], claims["exp"], f"{caller.key_id}/{terminal}", now)
            except REDIS_DOWN:
                return self._finish(caller, terminal, "qr", receipt, now, codes.STATUS_UNAVAILABLE,
                                    (R_UNAVAILABLE,), verdict.profile, permit, record, state)
            if outcome == "replayed":
                return self._finish(caller, terminal, "qr", receipt, now, codes.REPLAYED, (R_REPLAYED,),
                                    verdict.profile, permit, record, state)
            repeat = outcome == "repeat"
        return self._finish(caller, terminal, "qr", receipt, now, codes.VALID, (), verdict.profile,
                            permit, record, state, repeat=repeat)

    # --- card reads --------------------------------------------------------
    async def card(
        self, certificate: bytes, challenge: bytes, signature: bytes, caller: Caller, terminal: str, receipt: bool
    ) -> VerdictOut:
        """WIRE-FORMAT 6: certificate -> challenge (consumed atomically) -> card signature -> status."""
        trust = self.trust.current
        now = time.time()
        profile = codes.PROFILE_CARD
        if trust is None:
            return self._finish(caller, terminal, "card", receipt, now, codes.STATUS_UNAVAILABLE,
                                (R_TRUST_UNAVAILABLE,), profile, None, None)
        verdict = fastpath.verify_card_certificate(certificate, trust, int(now))
        try:
            # A challenge is used up by any attempt, good or bad (it is single-use).
            fresh = await self.challenges.consume(challenge, caller.key_id)
        except REDIS_DOWN:
            fresh = None
        if verdict.result != _FASTPATH_OK:
            return self._finish(caller, terminal, "card", receipt, now, verdict.result, verdict.reasons,
                                profile, None, None)
        if fresh is None:
            return self._finish(caller, terminal, "card", receipt, now, codes.STATUS_UNAVAILABLE,
                                (R_UNAVAILABLE,), profile, None, None)
        if not fresh:
            return self._finish(caller, terminal, "card", receipt, now, codes.CHALLENGE_INVALID,
                                (R_CHALLENGE_UNKNOWN,), profile, None, None)
        reason = fastpath.check_card_signature(verdict.card_public_key, challenge, signature)  # type: ignore[arg-type]
        if reason is not None:
            return self._finish(caller, terminal, "card", receipt, now, _CARD_REASON_RESULTS.get(reason, codes.MALFORMED),
                                (reason,), profile, None, None)
        card: dict[str, Any] = verdict.permit  # type: ignore[assignment]
        try:
            record, state = await self.index.permit(card["pn"], now)
        except IndexUnavailableError as exc:
            return self._finish(caller, terminal, "card", receipt, now, codes.STATUS_UNAVAILABLE,
                                (exc.reason,), profile, card, None, exc.state)
        failed = check_permit(record, cst_today(now), card_number=card["cn"])
        result, reasons = failed if failed is not None else (codes.VALID, ())
        values = record_values(record, card["cn"]) if record is not None else card
        return self._finish(caller, terminal, "card", receipt, now, result, reasons, profile, values, None, state)

    # --- manual entry ------------------------------------------------------
    async def manual(self, permit_number: str, dob: str, caller: Caller, terminal: str, receipt: bool) -> VerdictOut:
        """Nothing to scan: the permit number and date of birth, checked against the index alone."""
        now = time.time()
        try:
            record, state = await self.index.permit(permit_number, now)
        except IndexUnavailableError as exc:
            return self._finish(caller, terminal, "manual", receipt, now, codes.STATUS_UNAVAILABLE,
                                (exc.reason,), PROFILE_MANUAL, None, None, exc.state, permit_number=permit_number)
        if record is not None and record.dob != dob:
            # Same answer as an unknown number: a wrong date of birth must not confirm that the number exists.
            record = None
        failed = check_permit(record, cst_today(now))
        if record is None:
            return self._finish(caller, terminal, "manual", receipt, now, codes.PERMIT_NOT_FOUND,
                                (R_MANUAL_NO_MATCH,), PROFILE_MANUAL, None, None, state, permit_number=permit_number)
        result, reasons = failed if failed is not None else (codes.VALID, ())
        return self._finish(caller, terminal, "manual", receipt, now, result, reasons, PROFILE_MANUAL,
                            record_values(record), None, state)

    # --- the answer --------------------------------------------------------
    def _finish(
        self,
        caller: Caller,
        terminal: str,
        kind: str,
        receipt: bool,
        now: float,
        result: str,
        reasons: Sequence[str],
        profile: str | None,
        values: dict[str, Any] | None,
        record: PermitRecord | None,
        state: Any = None,
        *,
        repeat: bool = False,
        permit_number: str | None = None,
    ) -> VerdictOut:
        """Shape the verdict for this caller, count it, audit it, sign it if asked."""
        view = None
        if values is not None:
            if record is not None:
                values = {**values, "status": record.status}
                cn = values.get("cn")
                values["card_status"] = record.card_status(cn) if cn else None
            view = permit_view(permit_fields(caller.role, caller.full_fields), values)
        out = VerdictOut(
            result=result,  # type: ignore[arg-type]
            reasons=list(reasons),
            profile=profile,  # type: ignore[arg-type]
            permit=view,
            checked_at=rfc3339(now),
            index_as_of=state.as_of if state is not None else None,
            lag_s=round(now - state.confirmed_at, 3) if state is not None and state.confirmed_at else None,
            repeat=repeat,
        )
        self.metrics.inc("pv_verdicts", (profile or "none", result))
        pn = values.get("pn") if values is not None else permit_number
        self.audit.record(
            key_id=caller.key_id, role=caller.role, kind=kind, result=result, terminal=terminal,
            profile=profile or "", permit_number=pn or "",
        )
        if receipt:
            signer = self.receipts.signer
            if signer is not None:
                out.receipt = signer.sign(msgspec.to_builtins(out))
        return out


class ReceiptHolder:
    """The receipt signer, once loaded (it needs Redis; until then verdicts go out unsigned)."""

    __slots__ = ("signer",)

    def __init__(self) -> None:
        self.signer: ReceiptSigner | None = None


def _profile_of(text: str) -> str | None:
    if text.startswith("WP1:"):
        return codes.PROFILE_WP1
    if text.startswith("ES1:"):
        return codes.PROFILE_ES1
    return None
