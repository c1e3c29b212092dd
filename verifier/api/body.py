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

Only JSON is taken: a ``Content-Type`` of ``application/json`` or any
``application/*+json``, with no parameter but an optional ``charset=utf-8``; anything
else, or none at all, is a 415 problem (with ``Accept-Post``/``Accept-Patch`` naming
what is taken), decided from the headers before a byte of the body is read. A JSON
object with the same key twice, at any depth, is a 400 naming the key: msgspec (like
most decoders) keeps the last one silently, so ``{"qr": good, "qr": bad}`` would mean
whatever the reader's decoder picks. The check is one split of the body at its
quotes when the body has no backslash (no escaped key can then hide a
duplicate); otherwise, or when a key name comes twice anywhere, Python's C JSON scanner
decides, object by object.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.openapi.spec import Example, OpenAPIMediaType, OpenAPIResponse, Operation, Reference, RequestBody

from verifier.api.openapi import _DESCRIPTIONS
from verifier.lib.problems import PROBLEM_MEDIA_TYPE, FieldError, Problem

__all__ = ["ACCEPTED_MEDIA_TYPE", "duplicate_key", "json_body", "read_body", "read_json", "request_components"]

T = TypeVar("T")

_REF = "#/components/schemas/{name}"
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_documented: list[type] = []
_AT_PATH = re.compile(r" - at `\$(.*)`$")
_NAMED_FIELD = re.compile(r"field `([^`]+)`")
_INDEX = re.compile(r"\[(\d+)\]")

ACCEPTED_MEDIA_TYPE = "application/json"
# The Content-Type values clients send, lower-cased, taken without parsing.
_JSON_AS_SENT = frozenset({
    b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8",
    b"application/json; charset=\"utf-8\"",
})
_STRUCTURED_JSON = re.compile(r"application/[a-z0-9!#$&^_.-]+\+json")


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
            self.responses = {**(self.responses or {}), "415": OpenAPIResponse(
                description=_DESCRIPTIONS[415],
                content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=Reference(ref=_REF.format(name="ProblemDocument")))},
            )}

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


def _unsupported(detail: str, method: str) -> Problem:
    header = "Accept-Patch" if method == "PATCH" else "Accept-Post"
    return Problem(415, detail + " This endpoint takes application/json (UTF-8).",
                   headers={header: ACCEPTED_MEDIA_TYPE})


def _check_json_media_type(value: bytes | None, method: str) -> None:
    """Refuse (415) a body that does not say it is JSON in UTF-8."""
    if value is None:
        raise _unsupported("The request has no Content-Type header.", method)
    if value.lower() in _JSON_AS_SENT:
        return
    text = value.decode("latin-1")
    media_type, *parameters = (part.strip() for part in text.split(";"))
    media_type = media_type.lower()
    if not media_type:
        raise _unsupported("The request's Content-Type header is empty.", method)
    if media_type != "application/json" and not _STRUCTURED_JSON.fullmatch(media_type):
        raise _unsupported(f"The request body is {media_type!r}, not JSON.", method)
    for parameter in parameters:
        name, equals, raw = parameter.partition("=")
        name, raw = name.strip().lower(), raw.strip()
        if not parameter:
            continue
        if name != "charset" or not equals:
            raise _unsupported(f"The Content-Type parameter {name!r} is not taken.", method)
        charset = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
        if charset.lower() != "utf-8":
            raise _unsupported(f"The charset {charset!r} is not taken; JSON is UTF-8.", method)


def duplicate_key(raw: bytes) -> str | None:
    """The first key found twice in one JSON object of ``raw`` (a valid JSON document), or None."""
    if raw.find(b"\\") < 0:
        # no escape: every `"` opens or closes a string, so the pieces between them are
        # outside, inside, outside, ...; a string whose next outside piece starts with `:` is a key
        pieces = raw.split(b'"')
        keys = [inside for inside, after in zip(pieces[1::2], pieces[2::2])
                if after[:1] == b":" or after.lstrip()[:1] == b":"]
        if len(keys) == len(set(keys)):
            return None  # no key name twice anywhere, so not twice in one object
    # a key name twice somewhere (maybe in two objects), or escapes: decide object by object
    found: list[str] = []

    def refuse_repeats(pairs: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                found.append(key)
                raise _Repeated
            seen.add(key)

    try:
        json.loads(raw, object_pairs_hook=refuse_repeats)  # RecursionError, ValueError: the caller's
    except _Repeated:
        return found[0]
    return None


class _Repeated(Exception):
    pass


async def read_body(request: Request[Any, Any, Any], *, json_only: bool = False) -> bytes:
    """The request body, at most the route's ``request_max_body_size`` (else a 413 problem);
    with ``json_only``, a 415 problem unless its Content-Type says JSON in UTF-8."""
    scope = request.scope
    limit = scope["route_handler"].resolve_request_max_body_size() or math.inf
    media_type: bytes | None = None
    media_types = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                announced = int(value)
            except ValueError:
                raise Problem(400, "The Content-Length header is not a number.") from None
            if announced > limit:
                raise Problem(413, "The request body is larger than this endpoint takes.")
        elif name == b"content-type":
            media_type = value
            media_types += 1
    if json_only:
        if media_types > 1:
            raise Problem(400, "The request has more than one Content-Type header.")
        _check_json_media_type(media_type, scope["method"])
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
    """The body as ``model``, strictly; a 400 problem otherwise (413 over the route's size limit,
    415 unless it says it is JSON)."""
    raw = await read_body(request, json_only=True)
    decoder = _decoders.get(model)
    if decoder is None:
        decoder = _decoders[model] = msgspec.json.Decoder(model)
    try:
        data = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise Problem(400, "The request body does not match the schema; see errors.",
                      errors=[_field_error(str(exc))]) from None
    except msgspec.DecodeError:
        raise Problem(400, "The request body is not a JSON document.") from None
    try:
        repeated = duplicate_key(raw)
    except (RecursionError, ValueError):  # nested deeper than Python's scanner goes, a 5,000-digit number
        raise Problem(400, "The request body is nested too deeply or holds a number too long.") from None
    if repeated is not None:
        raise Problem(400, f"The request body has the key {repeated!r} twice in one object.",
                      errors=[FieldError(message="duplicate key", key=repeated, source="body")])
    return data  # type: ignore[no-any-return]
