"""/v1/holder/*: the e-card platform's API, on a holder's behalf (role ``essc_platform``).

The platform authenticates with its own API key as every caller does; a signed-in
holder's calls also carry ``X-Holder-Token`` (from ``POST /v1/holder/session``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIMediaType, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import Parameter

from verifier.api.auth.guard import caller_of, require_key
from verifier.api.auth.roles import HOLDER_PLATFORM
from verifier.api.body import json_body, read_json
from verifier.api.holder.schemas import (
    HolderPermitOut,
    MatchOut,
    MatchRequest,
    SessionOut,
    SessionRequest,
    VerificationsOut,
)
from verifier.api.holder.service import NOTICE_FORMATS, HolderService
from verifier.api.holder.sessions import HolderSession
from verifier.api.openapi import API_KEY_SECURITY, PROTECTED, problems
from verifier.api.responses import JsonAnswer
from verifier.lib.problems import Problem

__all__ = ["HolderController"]

# A match is a few hundred bytes (16 KB admits every schema-valid one, escapes and all);
# a sign-in code up to 8,192 characters, each up to 12 bytes as a JSON escape.
HOLDER_MAX_BODY = 16 * 1024
SESSION_MAX_BODY = 128 * 1024
HOLDER_TOKEN_HEADER = "x-holder-token"
MAX_PAGE = 200

# The platform's key and the holder's token, both.
HOLDER_SECURITY = [{"BearerKey": [], "HolderToken": []}, {"HeaderKey": [], "HolderToken": []}]
# What a holder-token endpoint can answer besides the platform key's problems.
_WITH_TOKEN = (*PROTECTED, 401)

_EXAMPLE_PERMIT = {
    "pn": "WP3100002025000123", "status": "active", "cat": "B", "emp": "91310000MA1FL0AB2C",
    "vf": "2025-03-01", "vt": "2027-02-28", "n": "DOE JANE ELIZABETH", "nat": "CAN", "dob": "1988-02-29",
    "v": 3, "ssn": "310000198802290021", "cn": "S31000012345678", "card_status": "active",
}
_AS_OF = {"seq": 18422, "time": "2026-11-27T10:31:01.950Z"}


# What `since` takes (verifier/api/audit/export.py, parse_since), as the document says it.
SINCE_FORMATS = [{"format": "date-time"}, {"format": "date"}, {"pattern": r"^[0-9]{1,11}(\.[0-9]{1,6})?$"}]


def _documented(
    body: type | None = None, body_examples: dict[str, Any] | None = None, answer: Any = None,
    answer_media: dict[str, tuple[Schema, Any]] | None = None,
) -> type[Operation]:
    """The operation with its request body (and examples), an example of its 200 answer, or
    (``answer_media``) the 200 answer's media types, each with a schema and an example."""
    base: type[Operation] = json_body(body, body_examples) if body is not None else Operation

    @dataclass
    class Documented(base):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            parent = getattr(super(), "__post_init__", None)
            if parent is not None:
                parent()
            ok = (self.responses or {}).get("200") or (self.responses or {}).get("204")
            if ok is None or isinstance(ok, type(None)):
                return
            if answer_media is not None:
                ok.content = {media: OpenAPIMediaType(schema=schema, examples={"example": Example(value=value)})
                              for media, (schema, value) in answer_media.items()}
            elif answer is not None and ok.content:  # type: ignore[union-attr]
                for media in ok.content.values():  # type: ignore[union-attr]
                    media.examples = {"example": Example(value=answer)}

    return Documented


def _holder_token(request: Request[Any, Any, Any]) -> str | None:
    for name, value in request.scope["headers"]:
        if name == b"x-holder-token":
            return value.decode("latin-1").strip()
    return None


async def _session(request: Request[Any, Any, Any]) -> tuple[HolderService, HolderSession]:
    service: HolderService = request.app.state.runtime.holder
    return service, await service.session_of(_holder_token(request), caller_of(request))


class HolderController(Controller):
    path = "/v1/holder"
    tags = ["holder"]
    before_request = require_key
    opt = {"roles": HOLDER_PLATFORM}
    security = API_KEY_SECURITY
    request_max_body_size = HOLDER_MAX_BODY

    @post("/session", status_code=200, responses=problems(*PROTECTED), request_max_body_size=SESSION_MAX_BODY,
          operation_class=_documented(SessionRequest, {"a fresh e-card code": {"code": "ES1:6BFOXN*TS0BI$ZDFRH..."}},
                                      {"token": "pvh_3q2Z7wLk...", "expires_at": "2026-11-27T10:41:02.113Z",
                                       "result": "VALID"}),
          summary="Sign a holder in with a fresh e-card code")
    async def sign_in(self, request: Request[Any, Any, Any]) -> JsonAnswer[SessionOut]:
        """The holder's fresh `ES1:` code (the app did its face check before showing it) is verified as a
        scan would be (signature, times, status; single use: it is consumed). VALID, and a permit
        that is cancelled, ended or changed since (PERMIT_CANCELLED, PERMIT_EXPIRED, SUPERSEDED),
        give a holder token bound to that permit and to this platform key, valid 10 minutes by
        default. Any other verdict is a 403 problem naming it (`result`, `reasons`; REPLAYED for a
        code used before), STATUS_UNAVAILABLE a 503."""
        data = await read_json(request, SessionRequest)
        service: HolderService = request.app.state.runtime.holder
        return JsonAnswer(await service.sign_in(data.code, caller_of(request)))

    @delete("/session", status_code=204, responses=problems(*_WITH_TOKEN), security=HOLDER_SECURITY,
            summary="Sign the holder out (end the holder token)")
    async def sign_out(self, request: Request[Any, Any, Any]) -> None:
        """The token in `X-Holder-Token` stops working at once."""
        service, session = await _session(request)
        await service.sign_out(session, caller_of(request))

    @get("/permit", responses=problems(*_WITH_TOKEN, 404), security=HOLDER_SECURITY,
         operation_class=_documented(answer={
             "permit": _EXAMPLE_PERMIT,
             "cards": [{"cn": "S31000012340001", "status": "lost"}, {"cn": "S31000012345678", "status": "active"}],
             "index_as_of": _AS_OF, "lag_s": 0.16}),
         summary="The signed-in holder's own permit")
    async def permit(self, request: Request[Any, Any, Any]) -> HolderPermitOut:
        """Every field the index has about the holder, the permit's status and its cards', and how
        fresh the index is."""
        service, session = await _session(request)
        return await service.permit(session, caller_of(request))

    @get("/notice", responses=problems(*_WITH_TOKEN, 406, 409), security=HOLDER_SECURITY,
         operation_class=_documented(answer_media={
             "application/pdf": (Schema(type=OpenAPIType.STRING, format="binary"), "(an A4 PDF: fields and QR code)"),
             "image/png": (Schema(type=OpenAPIType.STRING, format="binary"), "(a PNG of the QR code)"),
             "text/plain": (Schema(type=OpenAPIType.STRING), "WP1:6BFOXN*TS0BI$ZDFRH...\n"),
         }),
         summary="The holder's Notice of Foreigner's Work Permit (PDF, PNG or the code)")
    async def notice(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """By `Accept`: `application/pdf` (the default: the permit's fields and the QR code at 55 mm, for
        printing), `image/png` (the QR code) or `text/plain` (the `WP1:` code). The code is signed by
        the permit system; none is issued for a cancelled or ended permit (409)."""
        accept = request.headers.get("accept")
        media_type = request.accept.best_match(list(NOTICE_FORMATS)) if accept and accept.strip() else NOTICE_FORMATS[0]
        if media_type is None:
            raise Problem(406, "The notice comes as application/pdf, image/png or text/plain.")
        service, session = await _session(request)
        notice = await service.notice(session, caller_of(request), media_type)
        headers = {"Cache-Control": "no-store", "Vary": "Accept"}
        if notice.filename:
            headers["Content-Disposition"] = f'attachment; filename="{notice.filename}"'
        return Response(notice.body, media_type=notice.media_type, headers=headers)

    @get("/verifications", responses=problems(*_WITH_TOKEN), security=HOLDER_SECURITY,
         operation_class=_documented(answer={
             "items": [
                 {"time": "2026-11-27T10:31:02.113Z", "organisation": "Shanghai Exit-Entry Administration",
                  "terminal": "Desk 12", "place": "Pudong airport, T2 arrivals", "kind": "qr", "code": "ES1",
                  "result": "VALID"},
                 {"time": "2026-11-20T02:00:00.000Z", "organisation": "Acme HR platform", "terminal": None,
                  "place": None, "kind": "lookup", "code": None, "result": "found"},
             ],
             "next": "MS40YjFlMmQ5ZjNhNzAuMTc2MzYwNDAwMDAwMC4x"}),
         summary="Who verified me: every check of the holder's permit or card")
    async def verifications(
        self,
        request: Request[Any, Any, Any],
        since: Annotated[str | None, Parameter(
            max_length=40, description="From this time on: RFC 3339, a date (UTC) or epoch seconds; "
            "default: all that is kept (12 months).",
            examples=[Example(value="2026-11-01")], schema_extra={"anyOf": SINCE_FORMATS})] = None,
        cursor: Annotated[str | None, Parameter(max_length=128, description="The `next` of the previous page.")] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="Items a page (default 50).")] = 50,
    ) -> VerificationsOut:
        """Newest first: when, which organisation and terminal (by their registered names), what kind of
        check and its result. Kept 12 months (configurable), at most 10,000 checks a permit."""
        service, session = await _session(request)
        return await service.verifications_of(session, caller_of(request), since, cursor, limit)

    @post("/match", status_code=200, responses=problems(*PROTECTED),
          operation_class=_documented(MatchRequest, {
              "by permit number": {"name": "Jane Elizabeth Doe", "dob": "1988-02-29", "pn": "WP3100002025000123"},
              "by social security number": {"name": "DOE, Jane", "dob": "1988-02-29", "ssn": "310000198802290021"},
          }, {"result": "no_match", "reasons": ["match.dob_differs"]}),
          summary="Real-name check of an e-card registration")
    async def match(self, request: Request[Any, Any, Any]) -> JsonAnswer[MatchOut]:
        """Does this name and date of birth belong to this permit number (or social security number)?
        `match`, or `no_match` with which of identifier, name and date of birth failed, as codes
        only. Names compare after normalisation: case, spacing and punctuation, diacritics
        (Müller = MULLER) and the order of the name's parts do not matter. Limited per platform key
        and per identifier (429 with Retry-After); every attempt is audited."""
        data = await read_json(request, MatchRequest)
        service: HolderService = request.app.state.runtime.holder
        return JsonAnswer(await service.match(data, caller_of(request)))
