"""GET /v1/permits/{pn}, POST /v1/permits/lookup, POST /v1/verify/manual."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter

from verifier.api.auth.guard import caller_of, require_key
from verifier.api.auth.roles import BULK_LOOKUP, PERMIT_READERS, VERIFIERS
from verifier.api.body import json_body, read_json
from verifier.api.openapi import API_KEY_SECURITY, PROTECTED, problems
from verifier.api.permits.schemas import LookupOut, LookupRequest, ManualRequest, PermitOut
from verifier.api.responses import JsonAnswer
from verifier.api.verdicts.index_view import IndexUnavailableError
from verifier.api.verdicts.schemas import VerdictOut
from verifier.lib.problems import Problem

# 10,000 identifiers of at most 64 characters, quoted, with commas.
LOOKUP_MAX_BODY = 1024 * 1024


def _unavailable(exc: IndexUnavailableError) -> Problem:
    return Problem(503, f"The permit index cannot answer now ({exc.reason}); retry shortly.",
                   headers={"Retry-After": "1"})


class PermitController(Controller):
    path = "/v1"
    tags = ["permits"]
    before_request = require_key
    security = API_KEY_SECURITY

    @get("/permits/{pn:str}", opt={"roles": PERMIT_READERS}, responses=problems(*PROTECTED, 404),
         summary="One permit, fields by role")
    async def get_permit(
        self, request: Request[Any, Any, Any], pn: Annotated[str, Parameter(max_length=64, description="Work permit number")]
    ) -> PermitOut:
        try:
            out = await request.app.state.runtime.lookups.one(pn, caller_of(request))
        except IndexUnavailableError as exc:
            raise _unavailable(exc) from None
        if out is None:
            raise Problem(404, "No such permit.")
        return out  # type: ignore[no-any-return]

    @post("/permits/lookup", status_code=200, opt={"roles": BULK_LOOKUP}, responses=problems(*PROTECTED),
          request_max_body_size=LOOKUP_MAX_BODY, operation_class=json_body(LookupRequest),
          summary="Look up to 10,000 permits by pn, ssn or cn")
    async def lookup_permits(self, request: Request[Any, Any, Any]) -> JsonAnswer[LookupOut]:
        """Found and missing; a partner key sees only its employers' permits (others are missing)."""
        data = await read_json(request, LookupRequest)
        try:
            return JsonAnswer.raw(await request.app.state.runtime.lookups.many(data.by, data.ids, caller_of(request)))
        except IndexUnavailableError as exc:
            raise _unavailable(exc) from None

    @post("/verify/manual", status_code=200, opt={"roles": VERIFIERS}, responses=problems(*PROTECTED),
          operation_class=json_body(ManualRequest), tags=["verification"],
          summary="Verify by permit number and date of birth")
    async def verify_manual(self, request: Request[Any, Any, Any]) -> JsonAnswer[VerdictOut]:
        """When nothing can be scanned: a verdict from the index alone (profile MANUAL)."""
        data = await read_json(request, ManualRequest)
        verifications = request.app.state.runtime.verifications
        return JsonAnswer(await verifications.manual(data.pn, data.dob, caller_of(request), data.terminal, data.receipt))
