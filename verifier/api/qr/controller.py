"""POST /v1/verify/qr and /v1/verify/qr/batch."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from verifier.api.auth.guard import caller_of, require_key
from verifier.api.auth.roles import VERIFIERS
from verifier.api.body import json_body, read_json
from verifier.api.openapi import API_KEY_SECURITY, PROTECTED, problems
from verifier.api.qr.schemas import QrBatchRequest, QrBatchResponse, QrRequest
from verifier.api.responses import JsonAnswer
from verifier.api.verdicts.schemas import VerdictOut

# 1,000 codes of at most ~6.2 kB of text each, and their JSON.
BATCH_MAX_BODY = 8 * 1024 * 1024


class QrController(Controller):
    path = "/v1/verify"
    tags = ["verification"]
    before_request = require_key
    opt = {"roles": VERIFIERS}
    security = API_KEY_SECURITY

    @post("/qr", status_code=200, responses=problems(*PROTECTED), operation_class=json_body(QrRequest),
          summary="Verify a scanned QR code")
    async def verify_qr(self, request: Request[Any, Any, Any]) -> JsonAnswer[VerdictOut]:
        """A verdict for a WP1 or ES1 code: WIRE-FORMAT 1-4, then the status in the index (5)."""
        data = await read_json(request, QrRequest)
        verifications = request.app.state.runtime.verifications
        return JsonAnswer(await verifications.qr(data.qr, caller_of(request), data.terminal, data.receipt))

    @post("/qr/batch", status_code=200, responses=problems(*PROTECTED), request_max_body_size=BATCH_MAX_BODY,
          operation_class=json_body(QrBatchRequest), summary="Verify up to 1,000 QR codes")
    async def verify_qr_batch(self, request: Request[Any, Any, Any]) -> JsonAnswer[QrBatchResponse]:
        """One verdict per code, in order."""
        data = await read_json(request, QrBatchRequest)
        verifications = request.app.state.runtime.verifications
        verdicts = await verifications.qr_batch(data.codes, caller_of(request), data.terminal, data.receipt)
        return JsonAnswer(QrBatchResponse(verdicts=verdicts))
