"""POST /v1/cards/challenge and /v1/verify/card."""

from __future__ import annotations

from base64 import b64decode
from typing import Any

from litestar import Controller, Request, post

from verifier.api.auth.guard import caller_of, require_key
from verifier.api.auth.roles import VERIFIERS
from verifier.api.body import json_body, read_json
from verifier.api.cards.schemas import CardRequest, ChallengeOut
from verifier.api.openapi import API_KEY_SECURITY, PROTECTED, problems
from verifier.api.responses import JsonAnswer
from verifier.api.verdicts.schemas import VerdictOut
from verifier.api.verdicts.status import rfc3339
from verifier.lib.problems import Problem
from verifier.lib.redis_errors import REDIS_UNAVAILABLE


class CardController(Controller):
    path = "/v1"
    tags = ["verification"]
    before_request = require_key
    opt = {"roles": VERIFIERS}
    security = API_KEY_SECURITY

    @post("/cards/challenge", status_code=200, responses=problems(*PROTECTED), summary="A challenge for a card read")
    async def card_challenge(self, request: Request[Any, Any, Any]) -> ChallengeOut:
        """32 random bytes for the card to sign, usable once, within 60 s, by this API key."""
        store = request.app.state.runtime.challenges
        try:
            challenge, expires_at = await store.issue(caller_of(request).key_id)
        except REDIS_UNAVAILABLE:
            raise Problem(503, "Challenges cannot be issued now; retry shortly.", headers={"Retry-After": "1"}) from None
        return ChallengeOut(challenge=challenge, expires_at=rfc3339(expires_at))

    @post("/verify/card", status_code=200, responses=problems(*PROTECTED), operation_class=json_body(CardRequest),
          summary="Verify a physical card read")
    async def verify_card(self, request: Request[Any, Any, Any]) -> JsonAnswer[VerdictOut]:
        """Certificate, challenge (consumed), the card's signature, then the status in the index."""
        data = await read_json(request, CardRequest)
        verifications = request.app.state.runtime.verifications
        # the schema's pattern admits only what decodes
        certificate, challenge, signature = (b64decode(data.certificate), b64decode(data.challenge),
                                             b64decode(data.signature))
        return JsonAnswer(await verifications.card(
            certificate, challenge, signature, caller_of(request), data.terminal, data.receipt
        ))
