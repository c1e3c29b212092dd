"""A JSON answer encoded once by msgspec and sent as two ASGI messages.

The hot endpoints (verifications, look-ups) annotate ``-> JsonAnswer[Model]``, so
the OpenAPI schema names ``Model`` exactly as a plain ``-> Model`` would, and
return ``JsonAnswer(model_instance)``. Litestar then skips its own response
pipeline (``Response`` -> ``ASGIResponse``: media-type resolution, a header
container, per-request header normalisation, ~12 µs a request here) and calls
:meth:`JsonAnswer.to_asgi_response`, which hands back a responder that sends
the status line with two fixed headers and the body.

The bytes are those Litestar would send: the same msgspec JSON encoding and the
``content-type: application/json`` and ``content-length`` headers. Only for 200
answers to POST requests (no HEAD variant); problem documents keep going through
the exception handlers (verifier/lib/problems.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec
from litestar import Response

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send

__all__ = ["JsonAnswer", "encode"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
encode = _encoder.encode
_CONTENT_TYPE = (b"content-type", b"application/json")


class _Responder:
    __slots__ = ("_start", "_body")

    def __init__(self, body: bytes) -> None:
        self._start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [_CONTENT_TYPE, (b"content-length", b"%d" % len(body))],
        }
        self._body = {"type": "http.response.body", "body": body, "more_body": False}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(self._start)  # type: ignore[arg-type]
        await send(self._body)  # type: ignore[arg-type]


class JsonAnswer(Response[T], Generic[T]):
    """A 200 JSON answer: ``JsonAnswer(struct)``, or ``JsonAnswer.raw(json_bytes)``."""

    # Response.__init__ is not called: nothing but to_asgi_response is ever asked of
    # this object (no after_request hooks, no response cache on these routes).
    __slots__ = ("_payload",)

    def __init__(self, content: T) -> None:  # noqa: D107 - see the class docstring
        self._payload = encode(content)

    @classmethod
    def raw(cls, body: bytes) -> JsonAnswer[Any]:
        """An answer whose JSON the caller encoded (it must match the annotated model)."""
        answer: JsonAnswer[Any] = cls.__new__(cls)
        answer._payload = body
        return answer

    @property
    def body(self) -> bytes:
        return self._payload

    def to_asgi_response(self, app: Any, request: Any, **kwargs: Any) -> _Responder:  # type: ignore[override]
        return _Responder(self._payload)
