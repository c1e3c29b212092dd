"""RFC 9457 problem documents: every error answer of the API has this one shape.

A verdict is an answer (HTTP 200, whatever its code); a problem document is for a
request the service could not take: no or a bad API key (401), the wrong role (403),
too many requests (429), a body that is not what the schema says (400/413). A 5xx is
a bug: :func:`internal_error_handler` logs it and answers a bare 500 that reveals
nothing about the cause.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "FieldError",
    "Problem",
    "ProblemDocument",
    "EXCEPTION_HANDLERS",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger("verifier.errors")

# The `type` of each problem: a URI reference, stable, documented in /schema.
_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    406: "not-acceptable",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    409: "conflict",
    422: "unprocessable-content",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}
_TITLES = {
    400: "Bad request",
    401: "Missing or invalid API key",
    403: "This API key's role may not use this endpoint",
    404: "Not found",
    406: "Not acceptable",
    405: "Method not allowed",
    413: "Request body too large",
    415: "Unsupported media type",
    409: "Conflict with the resource's state",
    422: "The request is well-formed but cannot be carried out",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class FieldError(msgspec.Struct, omit_defaults=True):
    """One field-level complaint about a request."""

    message: str
    """What is wrong."""
    key: str | None = None
    """The field, dotted for nested fields (``ids.3``)."""
    source: str | None = None
    """Where the field was: body, path, query, header."""


class ProblemDocument(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None
    result: str | None = None
    """Extension: the verdict's result code, when a verdict is why the request was refused
    (a holder sign-in with a code that is not good enough)."""
    reasons: list[str] | None = None
    """Extension: that verdict's machine-readable reasons."""


def problem_type(status: int) -> str:
    return "/problems/" + _TYPES.get(status, "client-error" if status < 500 else "internal-error")


class Problem(HTTPException):
    """Raise to answer with a problem document (the status code says which)."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        type: str | None = None,
        title: str | None = None,
        result: str | None = None,
        reasons: list[str] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.errors = errors
        self.type = type
        """A more specific problem type than the status's (``/problems/...``), with its ``title``."""
        self.title = title
        self.result = result
        self.reasons = reasons


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    type: str | None = None,
    title: str | None = None,
    result: str | None = None,
    reasons: list[str] | None = None,
) -> Response[ProblemDocument]:
    document = ProblemDocument(
        type=type or problem_type(status),
        title=title or _TITLES.get(status, "Client error" if status < 500 else "Internal error"),
        status=status,
        detail=detail,
        errors=errors,
        result=result,
        reasons=reasons,
    )
    return Response(document, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


# msgspec names the field in its message when the body object itself is at fault.
_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")


def _field_errors(extra: Any) -> list[FieldError] | None:
    if not isinstance(extra, list):
        return None
    errors = []
    for item in extra:
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            key = item.get("key")
            source = item.get("source")
            if key == "data" and (named := _FIELD_IN_MESSAGE.search(item["message"])):
                key = named.group(1)  # "Object missing required field `qr`" is about qr
            errors.append(FieldError(
                message=item["message"],
                key=str(key) if key is not None else None,
                source=str(source) if source is not None else None,
            ))
    return errors or None


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ProblemDocument]:
    """4xx raised by Litestar (validation, routing, body size) or by our own code."""
    status = exc.status_code
    if status >= 500 and not (isinstance(exc, Problem) and status == 503):
        return internal_error_handler(request, exc)  # only "unavailable, retry" is a deliberate 5xx
    if isinstance(exc, Problem):
        errors = exc.errors
        detail = exc.detail
    elif isinstance(exc, ValidationException):
        errors = _field_errors(exc.extra)
        # Litestar's detail names the method and path with its query: harmless, but
        # the field errors say it better.
        detail = "The request does not match the schema; see errors."
        if errors is None and exc.detail and not exc.detail.startswith("Validation failed"):
            detail = exc.detail
    else:
        errors = _field_errors(exc.extra)
        detail = exc.detail or None
    headers = dict(exc.headers) if exc.headers else None
    if isinstance(exc, Problem):
        return problem_response(status, detail, errors=errors, headers=headers, type=exc.type,
                                title=exc.title, result=exc.result, reasons=exc.reasons)
    return problem_response(status, detail, errors=errors, headers=headers)


def redacted_traceback(exc: BaseException) -> str:
    """Where it happened, not what it said: the frames (file, line, function) and the
    exception types of the chain, without their messages or source lines, which may quote
    a code, a permit number or a name (no personal data in any log)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}\n'
                         for f in traceback.extract_tb(current.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(current).__module__}."
                     f"{type(current).__qualname__} (message withheld)")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nwhich was raised while handling:\n".join(parts)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemDocument]:
    """A bug: log it with its traceback (no request body, no personal data), answer a bare 500."""
    log.error(
        "internal error on %s %s: %s\n%s",
        request.method,
        # the handler's name, not the path: a path may hold a permit number
        getattr(request.scope.get("route_handler"), "handler_name", "?"),
        type(exc).__name__,
        redacted_traceback(exc),
    )
    return problem_response(HTTP_500_INTERNAL_SERVER_ERROR)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
