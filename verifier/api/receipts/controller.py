"""GET /v1/receipt-keys: public, so that anyone holding a receipt can check it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from verifier.api.openapi import problems
from verifier.api.receipts.schemas import ReceiptKeysOut
from verifier.lib.problems import Problem


class ReceiptController(Controller):
    path = "/v1/receipt-keys"
    tags = ["public"]

    @get("/", responses=problems(503), summary="Public keys of verdict receipts")
    async def receipt_keys(self, request: Request[Any, Any, Any]) -> ReceiptKeysOut:
        signer = request.app.state.runtime.receipts.signer
        if signer is None:
            raise Problem(503, "The receipt key is not loaded yet.", headers={"Retry-After": "1"})
        return ReceiptKeysOut(keys=signer.jwks()["keys"])
