"""/v1/webhooks: subscriptions to notifications (partner, essc_platform, admin), and the
admin's dead letters (/v1/admin/webhooks/dead-letters).

A subscription is ``{"url", "events"}``; the answer shows its signing secret once.
Messages follow the Standard Webhooks specification; README "Notifications" says
what each event carries, how delivery behaves and how to replay.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from verifier.api.auth.guard import caller_of, require_key
from verifier.api.auth.roles import ADMINS, HOLDER_PLATFORM, WEBHOOK_SUBSCRIBERS
from verifier.api.body import json_body, read_json
from verifier.api.openapi import API_KEY_SECURITY, PROTECTED, problems
from verifier.api.webhooks.schemas import (
    AttemptsOut,
    DeadLettersOut,
    PlatformSettings,
    ReplayOut,
    ReplayRequest,
    ResendOut,
    ResendRequest,
    SecretRotated,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookRequest,
)
from verifier.api.webhooks.service import WebhookService
from verifier.lib.problems import Problem
from verifier.notify import events

__all__ = ["DeadLetterController", "WebhookController"]

SubscriptionId = Annotated[str, Parameter(max_length=40, description="The subscription's id (wh_...)")]


def _service(request: Request[Any, Any, Any]) -> WebhookService:
    return request.app.state.webhooks  # type: ignore[no-any-return]


def _once(request: Request[Any, Any, Any], *names: str) -> None:
    """A query parameter given twice is refused, not silently one of its values."""
    for name in names:
        if len(request.query_params.getall(name, [])) > 1:
            raise Problem(400, f"The query parameter {name!r} is given more than once.")


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    before_request = require_key
    opt = {"roles": WEBHOOK_SUBSCRIBERS}
    security = API_KEY_SECURITY

    @post("", status_code=201, responses=problems(*PROTECTED, 409, 422), operation_class=json_body(WebhookRequest),
          summary="Subscribe a URL to notifications (the secret is shown once)")
    async def create(self, request: Request[Any, Any, Any]) -> WebhookCreated:
        """Partners hear of their own employers' permits only, every key of the fields it may see."""
        data = await read_json(request, WebhookRequest)
        return await _service(request).create(caller_of(request), data)

    @get("", responses=problems(*PROTECTED), summary="This key's subscriptions (an admin's: all)")
    async def list_webhooks(self, request: Request[Any, Any, Any]) -> WebhookList:
        return WebhookList(webhooks=await _service(request).list(caller_of(request)))

    @get("/settings", opt={"roles": HOLDER_PLATFORM}, responses=problems(*PROTECTED),
         summary="The e-card platform's notification settings")
    async def get_settings(self, request: Request[Any, Any, Any]) -> PlatformSettings:
        return PlatformSettings(verified_notices=await _service(request).verified_notices(caller_of(request)))

    @put("/settings", opt={"roles": HOLDER_PLATFORM}, responses=problems(*PROTECTED),
         operation_class=json_body(PlatformSettings), summary="Turn \"your permit was verified\" notices on or off")
    async def put_settings(self, request: Request[Any, Any, Any]) -> PlatformSettings:
        data = await read_json(request, PlatformSettings)
        await _service(request).set_verified_notices(caller_of(request), data.verified_notices)
        return data

    @get("/{sub_id:str}", responses=problems(*PROTECTED, 404), summary="One subscription, its state and backlog")
    async def get_webhook(self, request: Request[Any, Any, Any], sub_id: SubscriptionId) -> WebhookOut:
        return await _service(request).get(caller_of(request), sub_id)

    @delete("/{sub_id:str}", status_code=HTTP_204_NO_CONTENT, responses=problems(*PROTECTED, 404),
            summary="Unsubscribe (what was queued is dropped)")
    async def delete_webhook(self, request: Request[Any, Any, Any], sub_id: SubscriptionId) -> None:
        await _service(request).delete(caller_of(request), sub_id)

    @post("/{sub_id:str}/rotate-secret", status_code=200, responses=problems(*PROTECTED, 404),
          summary="A new signing secret; the old one keeps signing for 24 h")
    async def rotate(self, request: Request[Any, Any, Any], sub_id: SubscriptionId) -> SecretRotated:
        sub = await _service(request).rotate(caller_of(request), sub_id)
        return SecretRotated(id=sub.id, secret=sub.secret,
                             previous_secret_valid_until=events.rfc3339(sub.previous_secret_until_ms / 1000))

    @post("/{sub_id:str}/resume", status_code=200, responses=problems(*PROTECTED, 404),
          summary="Send to a paused endpoint again (what waited goes first, in order)")
    async def resume(self, request: Request[Any, Any, Any], sub_id: SubscriptionId) -> WebhookOut:
        return await _service(request).resume(caller_of(request), sub_id)

    @get("/{sub_id:str}/attempts", responses=problems(*PROTECTED, 404),
         summary="The latest delivery attempts, and why the endpoint is paused")
    async def attempts(
        self, request: Request[Any, Any, Any], sub_id: SubscriptionId,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="How many, newest first")] = 100,
    ) -> AttemptsOut:
        _once(request, "limit")
        return await _service(request).attempts(caller_of(request), sub_id, limit)

    @post("/{sub_id:str}/replay", status_code=HTTP_202_ACCEPTED, responses=problems(*PROTECTED, 404, 422),
          operation_class=json_body(ReplayRequest),
          summary="Send again every change since a sequence number or a time (within the retention)")
    async def replay(self, request: Request[Any, Any, Any], sub_id: SubscriptionId) -> ReplayOut:
        """Replayed messages keep their webhook-id: a receiver that had one already drops it."""
        data = await read_json(request, ReplayRequest)
        return await _service(request).replay(caller_of(request), sub_id, data)

    @get("/{sub_id:str}/replays/{replay_id:str}", responses=problems(*PROTECTED, 404), summary="A replay's progress")
    async def replay_status(
        self, request: Request[Any, Any, Any], sub_id: SubscriptionId,
        replay_id: Annotated[str, Parameter(max_length=40)],
    ) -> ReplayOut:
        return await _service(request).replay_status(caller_of(request), sub_id, replay_id)


class DeadLetterController(Controller):
    path = "/v1/admin/webhooks/dead-letters"
    tags = ["admin", "webhooks"]
    before_request = require_key
    opt = {"roles": ADMINS}
    security = API_KEY_SECURITY

    @get("", responses=problems(*PROTECTED), summary="Messages not delivered within the retry window")
    async def list_dead_letters(
        self, request: Request[Any, Any, Any],
        subscription: Annotated[str | None, Parameter(max_length=40, description="Only this subscription's")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> DeadLettersOut:
        _once(request, "subscription", "limit")
        return DeadLettersOut(dead_letters=await _service(request).dead_letters(subscription, limit))

    @post("/resend", status_code=200, responses=problems(*PROTECTED), operation_class=json_body(ResendRequest),
          summary="Queue dead letters again (same webhook-id, a fresh retry window)")
    async def resend(self, request: Request[Any, Any, Any]) -> ResendOut:
        data = await read_json(request, ResendRequest)
        resent, refused, missing = await _service(request).resend(data.ids, data.subscription, data.all)
        return ResendOut(resent=resent, refused=refused, missing=missing)
