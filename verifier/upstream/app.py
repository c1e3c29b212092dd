"""The simulator's HTTP face: a Litestar app over an :class:`Upstream` (see the package docstring)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from verifier.index.records import ChangeEvent, EventType, PermitRecord
from verifier.lib import upstream_wire as wire
from verifier.lib.problems import EXCEPTION_HANDLERS, Problem
from verifier.lib.upstream_notice import Notice
from verifier.upstream.feed import EventNotApplicable, UnknownPermit
from verifier.upstream.simulator import Faults, Upstream

GONE_TYPE = "/problems/cursor-too-old"


class _FeedPageOut(msgspec.Struct):
    """FeedPage with its events already encoded (msgpack): no decode/re-encode per page."""

    feed_id: str
    after: int
    page_end: int
    last_seq: int
    head_time: float
    time: float
    events: list[msgspec.Raw]


class EventRequest(msgspec.Struct, forbid_unknown_fields=True):
    type: EventType
    pn: str | None = None
    """The permit (every type but ``issue``)."""
    emp: str | None = None
    """``change``: the new employer's credit code (default: a random one)."""
    years: int | None = None
    """``extend``: by how many years (default: 1 to 3)."""


class RandomEventsRequest(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class HoldRequest(msgspec.Struct, forbid_unknown_fields=True):
    pns: Annotated[list[str], msgspec.Meta(min_length=1, max_length=1000)]


class EventRateRequest(msgspec.Struct, forbid_unknown_fields=True):
    rate: Annotated[float, msgspec.Meta(ge=0, le=100_000)]


class FaultsRequest(msgspec.Struct, forbid_unknown_fields=True):
    slow_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] | None = None
    error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    truncate_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    bad_trust_list: bool | None = None
    """Serve a trust list that WIRE-FORMAT 4 makes invalid as a whole."""
    reset_feed: bool = False
    """Start the feed again at seq 0 under a new feed id."""
    silent_changes: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    """With reset_feed (or alone): change this many permits without a feed event."""
    retain: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Keep only the newest N events: older cursors get 410 Gone."""


class IssueRequest(msgspec.Struct, forbid_unknown_fields=True):
    pn: str
    iat: int | None = None
    exp: int | None = None
    lifetime: Annotated[int, msgspec.Meta(ge=1, le=300)] = 60
    """ES1 only: exp - iat."""
    cn: str | None = None
    """Card only: which card (default: the active one)."""


class SignRequest(msgspec.Struct, forbid_unknown_fields=True):
    challenge: str
    """Base64 (standard alphabet) of the 32-byte challenge."""


class CodeResponse(msgspec.Struct):
    qr: str
    pn: str
    v: int


class CardResponse(msgspec.Struct):
    cn: str
    pn: str
    certificate: str
    """Base64 (standard alphabet) of the card certificate (COSE_Sign1 bytes)."""


class SignResponse(msgspec.Struct):
    signature: str
    """Base64 (standard alphabet) of the 64-byte signature."""


class StateResponse(msgspec.Struct):
    feed_id: str
    seq: int
    first_seq: int
    count: int
    event_rate: float
    retain: int
    faults: Faults
    trust_list_version: int


def _upstream(request: Request[Any, Any, Any]) -> Upstream:
    return request.app.state.upstream  # type: ignore[no-any-return]


def _wants_msgpack(request: Request[Any, Any, Any]) -> bool:
    accept = request.headers.get("accept", "")
    return "application/msgpack" in accept or "application/x-msgpack" in accept


class SimulatedFailure(Exception):
    """The error_rate fault switch fired: answer 503 (the shared handler would make a bug's 500)."""


def _simulated_failure(request: Request[Any, Any, Any], exc: SimulatedFailure) -> Response[bytes]:
    body = b'{"type":"/problems/unavailable","title":"Service unavailable","status":503,' \
        b'"detail":"simulated upstream failure"}'
    return Response(body, status_code=503, media_type="application/problem+json")


async def _apply_faults(upstream: Upstream) -> str | None:
    """Slow down, and draw whether this answer fails or is cut short."""
    if upstream.faults.slow_ms:
        await asyncio.sleep(upstream.faults.slow_ms / 1000)
    fault = upstream.draw_fault()
    if fault == "error":
        raise SimulatedFailure()
    return fault


@get("/feed")
async def feed(
    request: Request[Any, Any, Any],
    after: Annotated[int, QueryParameter(ge=0)],
    limit: Annotated[int, QueryParameter(ge=1, le=wire.MAX_FEED_LIMIT)] = 1000,
) -> Response[bytes]:
    """The change feed: events with seq > ``after``, at most ``limit``, oldest first."""
    upstream = _upstream(request)
    fault = await _apply_faults(upstream)
    page = upstream.feed_events(after, limit)
    if page is None:
        body = wire.GoneProblem(
            type=GONE_TYPE,
            title="Cursor too old",
            status=410,
            detail="the feed no longer holds the events after this cursor (or never did): resynchronise from /snapshot",
            first_seq=upstream.first_seq,
            feed_id=upstream.feed_id,
        )
        return Response(msgspec.json.encode(body), status_code=410, media_type="application/problem+json")
    feed_id, page_end, last_seq, head_time, now, events = page
    if _wants_msgpack(request):
        out = _FeedPageOut(feed_id, after, page_end, last_seq, head_time, now, [msgspec.Raw(e) for e in events])
        content = msgspec.msgpack.encode(out)
        media_type = wire.FEED_MEDIA_TYPE
    else:
        decoded = [msgspec.msgpack.decode(e, type=ChangeEvent) for e in events]
        content = msgspec.json.encode(wire.FeedPage(feed_id, after, page_end, last_seq, head_time, now, decoded))
        media_type = "application/json"
    if fault == "truncate":
        content = content[: len(content) // 2]
    return Response(content, media_type=media_type)


@get("/snapshot")
async def snapshot(
    request: Request[Any, Any, Any], format: Annotated[Literal["frames", "ndjson"], QueryParameter()] = "frames"
) -> Stream:
    """Every permit, consistent with one sequence number of the feed, streamed."""
    upstream = _upstream(request)
    fault = await _apply_faults(upstream)
    view = upstream.snapshot_view()
    cut_after = -1
    if fault == "truncate":
        cut_after = upstream.fault_rng().randrange(max(1, -(-view.count // 1024)) + 1)

    async def frames() -> AsyncIterator[bytes]:
        for n, data in enumerate(upstream.snapshot_frames(view)):
            if n == cut_after:
                yield data[: len(data) // 2]
                return
            yield data
            await asyncio.sleep(0)  # let events and other requests in between chunks

    async def ndjson() -> AsyncIterator[bytes]:
        for n, data in enumerate(upstream.snapshot_frames(view)):
            kind, payload = data[:1], data[wire.FRAME_HEADER.size:]
            if kind == wire.FRAME_RECORDS:
                records = msgspec.msgpack.decode(payload, type=list[PermitRecord])
                line = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
            else:
                name = "header" if kind == wire.FRAME_HEAD else "trailer"
                line = msgspec.json.encode({name: msgspec.msgpack.decode(payload)}) + b"\n"
            if n == cut_after:
                yield line[: len(line) // 2]
                return
            yield line
            await asyncio.sleep(0)

    if format == "ndjson":
        return Stream(ndjson(), media_type="application/x-ndjson")
    return Stream(
        frames(),
        media_type=wire.SNAPSHOT_MEDIA_TYPE,
        headers={"X-Snapshot-Seq": str(view.seq), "X-Feed-Id": view.feed_id},
    )


@get("/trust-list")
async def trust_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The JWK Set (WIRE-FORMAT 4) with every key's status, and its version."""
    upstream = _upstream(request)
    fault = await _apply_faults(upstream)
    content = msgspec.json.encode(upstream.trust_list())
    if fault == "truncate":
        content = content[: len(content) // 2]
    return Response(content, media_type="application/json")


@get("/permits/{pn:str}")
async def get_permit(request: Request[Any, Any, Any], pn: FromPath[str]) -> PermitRecord:
    """One permit as the upstream holds it now (a convenience, not used by the sync job)."""
    try:
        return _upstream(request).permit(pn)
    except UnknownPermit:
        raise Problem(404, "no such permit") from None


# -- admin: drive the simulator ---------------------------------------------------


def _state(u: Upstream) -> StateResponse:
    return StateResponse(
        feed_id=u.feed_id, seq=u.seq, first_seq=u.first_seq, count=u.count, event_rate=u.event_rate,
        retain=u.retain, faults=u.faults, trust_list_version=u.keys.version,
    )


@get("/admin/state")
async def admin_state(request: Request[Any, Any, Any]) -> StateResponse:
    return _state(_upstream(request))


@post("/admin/events", status_code=201)
async def admin_event(request: Request[Any, Any, Any], data: JSONBody[EventRequest]) -> ChangeEvent:
    """Make one event happen now to one permit ("cancel this permit now")."""
    if data.type != "issue" and not data.pn:
        raise Problem(400, "pn is required for this event type")
    try:
        return _upstream(request).apply(data.type, data.pn, emp=data.emp, years=data.years)
    except UnknownPermit:
        raise Problem(404, "no such permit") from None
    except EventNotApplicable as exc:
        raise Problem(409, str(exc)) from None


@post("/admin/events/random", status_code=201)
async def admin_random_events(request: Request[Any, Any, Any], data: JSONBody[RandomEventsRequest]) -> dict[str, int]:
    first, last = _upstream(request).random_events(data.count)
    return {"first_seq": first, "last_seq": last}


@post("/admin/hold", status_code=200)
async def admin_hold(request: Request[Any, Any, Any], data: JSONBody[HoldRequest]) -> dict[str, int]:
    """Keep random events away from these permits (the demo's samples); explicit events still apply."""
    try:
        return {"held": _upstream(request).hold(data.pns)}
    except UnknownPermit:
        raise Problem(404, "no such permit") from None


@post("/admin/event-rate", status_code=200)
async def admin_event_rate(request: Request[Any, Any, Any], data: JSONBody[EventRateRequest]) -> dict[str, float]:
    _upstream(request).event_rate = data.rate
    return {"rate": data.rate}


@post("/admin/faults", status_code=200)
async def admin_faults(request: Request[Any, Any, Any], data: JSONBody[FaultsRequest]) -> StateResponse:
    u = _upstream(request)
    faults = u.faults
    u.faults = Faults(
        slow_ms=faults.slow_ms if data.slow_ms is None else data.slow_ms,
        error_rate=faults.error_rate if data.error_rate is None else data.error_rate,
        truncate_rate=faults.truncate_rate if data.truncate_rate is None else data.truncate_rate,
        bad_trust_list=faults.bad_trust_list if data.bad_trust_list is None else data.bad_trust_list,
    )
    if data.retain is not None:
        u.set_retain(data.retain)
    if data.reset_feed:
        u.reset_feed(data.silent_changes)
    elif data.silent_changes:
        u.silent_changes(data.silent_changes)
    return _state(u)


@post("/admin/keys/rotate", status_code=200)
async def admin_rotate(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """A new active key; the old one retired."""
    return _upstream(request).rotate_key()


@post("/admin/keys/{kid:str}/revoke", status_code=200)
async def admin_revoke(request: Request[Any, Any, Any], kid: FromPath[str]) -> dict[str, Any]:
    try:
        return _upstream(request).revoke_key(kid)
    except (KeyError, ValueError):
        raise Problem(404, "no such key") from None


# -- issuing: real signed codes and card certificates for tests, demo, load tests ------


def _issue_errors(exc: Exception) -> Problem:
    if isinstance(exc, UnknownPermit):
        return Problem(404, "no such permit or card")
    return Problem(409, str(exc))


@post("/issue/wp1", status_code=200)
async def issue_wp1(request: Request[Any, Any, Any], data: JSONBody[IssueRequest]) -> CodeResponse:
    from verifier.issuing import MintError

    try:
        qr, record = _upstream(request).mint_wp1(data.pn, iat=data.iat, exp=data.exp)
    except (UnknownPermit, MintError, EventNotApplicable) as exc:
        raise _issue_errors(exc) from None
    return CodeResponse(qr=qr, pn=record.pn, v=record.v)


@post("/issue/es1", status_code=200)
async def issue_es1(request: Request[Any, Any, Any], data: JSONBody[IssueRequest]) -> CodeResponse:
    from verifier.issuing import MintError

    try:
        qr, record = _upstream(request).mint_es1(data.pn, iat=data.iat, lifetime=data.lifetime)
    except (UnknownPermit, MintError, EventNotApplicable) as exc:
        raise _issue_errors(exc) from None
    return CodeResponse(qr=qr, pn=record.pn, v=record.v)


@get("/notice/{pn:str}")
async def notice(request: Request[Any, Any, Any], pn: FromPath[str]) -> Notice:
    """The permit's Notice of Foreigner's Work Permit (its signed WP1 code), for the holder's download."""
    from verifier.issuing import MintError

    try:
        return _upstream(request).notice(pn)
    except (UnknownPermit, MintError, EventNotApplicable) as exc:
        raise _issue_errors(exc) from None


@post("/issue/card", status_code=200)
async def issue_card(request: Request[Any, Any, Any], data: JSONBody[IssueRequest]) -> CardResponse:
    from verifier.issuing import MintError

    try:
        cn, certificate, record = _upstream(request).mint_card(data.pn, cn=data.cn, iat=data.iat, exp=data.exp)
    except (UnknownPermit, MintError, EventNotApplicable) as exc:
        raise _issue_errors(exc) from None
    return CardResponse(cn=cn, pn=record.pn, certificate=base64.b64encode(certificate).decode())


@post("/cards/{cn:str}/sign", status_code=200)
async def card_sign(request: Request[Any, Any, Any], cn: FromPath[str], data: JSONBody[SignRequest]) -> SignResponse:
    """The software card of ``cn`` signs ``b"SSC-AUTH-1" || challenge`` (WIRE-FORMAT 6)."""
    upstream = _upstream(request)
    try:
        upstream.permit_of_card(cn)
    except UnknownPermit:
        raise Problem(404, "no such card") from None
    try:
        challenge = base64.b64decode(data.challenge, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(400, "challenge is not base64") from None
    try:
        signature = upstream.card(cn).sign_challenge(challenge)
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    return SignResponse(signature=base64.b64encode(signature).decode())


def create_upstream_app(upstream: Upstream) -> Litestar:
    """The simulator app; a task makes ``upstream.event_rate`` events per second while it runs."""

    @contextlib.asynccontextmanager
    async def event_stream(app: Litestar) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(upstream.generate_events(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    app = Litestar(
        route_handlers=[
            feed, snapshot, trust_list, get_permit,
            admin_state, admin_event, admin_random_events, admin_hold, admin_event_rate, admin_faults,
            admin_rotate, admin_revoke,
            issue_wp1, issue_es1, issue_card, card_sign, notice,
        ],
        lifespan=[event_stream],
        exception_handlers={**EXCEPTION_HANDLERS, SimulatedFailure: _simulated_failure},
        openapi_config=None,
        logging_config=None,
    )
    app.state.upstream = upstream
    return app
