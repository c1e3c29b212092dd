"""Permit look-ups: one permit, or up to 10,000 by pn, ssn or cn, as the caller's role may see them.

Every answered look-up has its audit record, the ones the index could not answer too
(a 503: result ``STATUS_UNAVAILABLE`` and the index's ``reason``), as verifications do.
"""

from __future__ import annotations

import time

from fastpath import codes
from verifier.api.audit.log import AuditLog
from verifier.api.auth.keys import Caller
from verifier.api.auth.roles import Role
from verifier.api.permits.render import RecordError, render_found
from verifier.api.permits.schemas import Found, LookupOut, PermitOut
from verifier.api.responses import encode
from verifier.api.verdicts.index_view import IndexUnavailableError, IndexView
from verifier.api.verdicts.status import R_UNAVAILABLE
from verifier.api.verdicts.views import view_spec
from verifier.index.records import PermitRecord

_EMPTY_FOUND = b'{"found":[]'


def _visible(caller: Caller, record: PermitRecord | None) -> bool:
    # A partner key only ever sees its own employers' permits; the rest are "missing".
    if record is None:
        return False
    return caller.role != Role.PARTNER or record.emp in caller.employers


class PermitLookups:
    def __init__(self, index: IndexView, audit: AuditLog) -> None:
        self.index = index
        self.audit = audit

    async def one(self, permit_number: str, caller: Caller) -> PermitOut | None:
        """Raises IndexUnavailableError."""
        now = time.time()
        try:
            record, state = await self.index.permit(permit_number, now)
        except IndexUnavailableError as exc:
            self.audit.record(key_id=caller.key_id, role=caller.role, kind="permit", result=codes.STATUS_UNAVAILABLE,
                              permit_number=permit_number, reason=exc.reason)
            raise
        visible = _visible(caller, record)
        self.audit.record(key_id=caller.key_id, role=caller.role, kind="permit",
                          result="found" if visible else "missing", permit_number=permit_number)
        if not visible:
            return None
        assert record is not None and state.confirmed_at is not None
        view = view_spec(caller.role, caller.full_fields).of_record(record)
        return PermitOut(permit=view, index_as_of=state.as_of, lag_s=round(now - state.confirmed_at, 3))

    async def many(self, by: str, ids: list[str], caller: Caller) -> bytes:
        """The JSON of a ``LookupOut``. Raises IndexUnavailableError."""
        try:
            return await self._many(by, ids, caller)
        except IndexUnavailableError as exc:
            # Nothing was shown: the record names no permit, only what was asked.
            self.audit.record(key_id=caller.key_id, role=caller.role, kind="lookup", result=codes.STATUS_UNAVAILABLE,
                              by=by, asked=str(len(ids)), reason=exc.reason)
            raise

    async def _many(self, by: str, ids: list[str], caller: Caller) -> bytes:
        now = time.time()
        spec = view_spec(caller.role, caller.full_fields)
        employers = caller.employers if caller.role == Role.PARTNER else None
        if by == "pn":
            # Up to 10,000 permits: the stored msgpack rendered straight to JSON (render.py),
            # no Python object per permit; the same rules as the loop below.
            values, state = await self.index.lookup_stored(ids, now)
            try:
                items, missing, shown = render_found(ids, values, spec.fields, employers)
            except RecordError as exc:  # a corrupt record is an outage, not "not found"
                raise IndexUnavailableError(R_UNAVAILABLE, state) from exc
            found: list[Found] = []
        else:
            records, state = await self.index.lookup(by, ids, now)
            items = b""
            if by == "cn":
                # by card number: show that card and its status (lost, replaced), not the active one
                found, missing, shown = [], [], []
                for identifier in ids:
                    record = records.get(identifier)
                    if not _visible(caller, record):
                        missing.append(identifier)  # another employer's permit looks exactly like an unknown one
                    else:
                        assert record is not None
                        found.append(Found(identifier, spec.of_record(record, identifier)))
                        shown.append(record.pn)
            else:
                found, missing, shown = spec.found(ids, records.get, employers, Found)
        # One audit record per look-up, naming the permits it showed.
        self.audit.record(key_id=caller.key_id, role=caller.role, kind="lookup",
                          result=f"found={len(shown)}", permit_number=",".join(shown), by=by,
                          asked=str(len(ids)), missing=str(len(missing)))
        assert state.confirmed_at is not None
        body = encode(LookupOut(found=found, missing=missing, index_as_of=state.as_of,
                                lag_s=round(now - state.confirmed_at, 3)))
        if not items:
            return body
        # the rendered items go into the empty "found" array msgspec wrote first
        assert body.startswith(_EMPTY_FOUND), body[:20]
        return b"".join((_EMPTY_FOUND[:-1], items, body[len(_EMPTY_FOUND) - 1:]))
