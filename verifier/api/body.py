"""Request bodies decoded strictly with msgspec, and documented in the OpenAPI schema.

Litestar converts bodies in msgspec's lax mode (``0`` passes for ``false``, ``"1"``
for ``1``), which would accept requests the schema forbids. The handlers read
their body through :func:`read_json` instead: one strict msgspec decode straight
from the bytes (also cheaper than Litestar's decode-then-convert), every violation
a 400 problem document naming the field. :func:`json_body` puts the model into the
operation's OpenAPI ``requestBody``; :func:`request_components` its schema into
the components.

The bytes are read straight from the ASGI ``receive`` with the route's
``request_max_body_size`` enforced as Litestar does (an announced Content-Length
over it, or more bytes than it, is 413), without Litestar's header container and
chunk generator (~5 µs a request); a client that disconnects mid-body gets a 400
rather than Litestar's 500.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.openapi.spec import Example, OpenAPIMediaType, Operation, Reference, RequestBody

from verifier.lib.problems import FieldError, Problem

__all__ = ["json_body", "read_body", "read_json", "request_components"]

T = TypeVar("T")

_REF = "#/components/schemas/{name}"
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_documented: list[type] = []
_AT_PATH = re.compile(r" - at `\$(.*)`$")
_NAMED_FIELD = re.compile(r"field `([^`]+)`")
_INDEX = re.compile(r"\[(\d+)\]")


def json_body(model: type, examples: dict[str, Any] | None = None) -> type[Operation]:
    """``operation_class=json_body(Model)``: the operation documents ``Model`` as its JSON body
    (with ``examples``, summary -> value, when given)."""
    _documented.append(model)
    documented = {f"example-{n}": Example(summary=summary, value=value)
                  for n, (summary, value) in enumerate((examples or {}).items(), 1)} or None

    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                required=True,
                content={"application/json": OpenAPIMediaType(
                    schema=Reference(ref=_REF.format(name=model.__name__)), examples=documented)},
            )

    return WithBody


def request_components() -> dict[str, Any]:
    """JSON schemas of every documented body model, for ``Components.schemas``."""
    _, components = msgspec.json.schema_components(_documented, ref_template=_REF)
    for model in _documented:  # what msgspec cannot say: a model's own addition (e.g. "pn or ssn")
        extra = getattr(model, "json_schema_extra", None)
        if extra:
            components[model.__name__].update(extra)
    return components


def _field_error(message: str) -> FieldError:
    key = None
    at = _AT_PATH.search(message)
    if at and at.group(1):
        key = _INDEX.sub(r".\1", at.group(1)).lstrip(".")  # "$.codes[3]" -> "codes.3"
    elif named := _NAMED_FIELD.search(message):
        key = named.group(1)  # "Object missing required field `qr`"
    text = _AT_PATH.sub("", message)
    return FieldError(message=text, key=key, source="body")


async def read_body(request: Request[Any, Any, Any]) -> bytes:
    """The request body, at most the route's ``request_max_body_size`` (else a 413 problem)."""
    scope = request.scope
    limit = scope["route_handler"].resolve_request_max_body_size() or math.inf
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                announced = int(value)
            except ValueError:
                raise Problem(400, "The Content-Length header is not a number.") from None
            if announced > limit:
                raise Problem(413, "The request body is larger than this endpoint takes.")
            break
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise Problem(413, "The request body is larger than this endpoint takes.")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise Problem(400, "The client went away before the request body was complete.")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(request: Request[Any, Any, Any], model: type[T]) -> T:
    """The body as ``model``, strictly; a 400 problem otherwise (413 over the route's size limit)."""
    raw = await read_body(request)
    decoder = _decoders.get(model)
    if decoder is None:
        decoder = _decoders[model] = msgspec.json.Decoder(model)
    try:
        return decoder.decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise Problem(400, "The request body does not match the schema; see errors.",
                      errors=[_field_error(str(exc))]) from None
    except msgspec.DecodeError:
        raise Problem(400, "The request body is not a JSON document.") from None
