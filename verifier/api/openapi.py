"""OpenAPI pieces shared by the controllers: the problem responses and the API key scheme."""

from __future__ import annotations

from typing import Annotated, Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from msgspec import Meta

from verifier.lib.problems import PROBLEM_MEDIA_TYPE, ProblemDocument

__all__ = ["API_KEY_SECURITY", "COMPONENTS", "LINKS", "Terminal", "add_links", "problems"]

_DESCRIPTIONS = {
    400: "The request does not match the schema (field detail in `errors`).",
    401: "No API key, or an unknown, revoked or malformed one (holder endpoints: or no, a malformed, "
         "unknown, ended or expired holder token).",
    403: "The key's role may not use this endpoint; or the request names another holder's resource, or a "
         "holder's sign-in code is refused (its verdict in `result`, `reasons`).",
    404: "No such resource.",
    406: "None of the media types in Accept can be given.",
    409: "The resource cannot be given in its present state.",
    413: "The request body is too large.",
    415: "The request body is not said to be JSON (Content-Type `application/json` or `application/*+json`, "
         "UTF-8 only).",
    422: "Well-formed, but it cannot be carried out as asked (the detail says why).",
    429: "The key is over its rate limit; see Retry-After.",
    503: "The index or the key store cannot be reached, or the index is not fresh; see Retry-After.",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """Responses documented as RFC 9457 problem documents."""
    return {
        status: ResponseSpec(
            data_container=ProblemDocument,
            description=_DESCRIPTIONS.get(status, "A problem document."),
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }


# The errors every key-protected endpoint can answer.
PROTECTED = (400, 401, 403, 413, 429, 503)

API_KEY_SECURITY = [{"BearerKey": []}, {"HeaderKey": []}]
COMPONENTS = Components(security_schemes={
    "BearerKey": SecurityScheme(type="http", scheme="bearer", description="An API key, `pvk_<id>_<secret>`."),
    "HeaderKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header",
                                description="The same API key, in a header of its own."),
    "HolderToken": SecurityScheme(type="apiKey", name="X-Holder-Token", security_scheme_in="header",
                                  description="A signed-in holder's token (`POST /v1/holder/session`), sent by the "
                                  "e-card platform beside its own API key."),
})

Terminal = Annotated[str, Meta(
    min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$",
    description="The scanner or card terminal, as the caller names it (used for scanners' double reads and the audit).",
)]


# OpenAPI links: what an answer lets the caller do next, by operationId (the generated
# ones, verifier/api/app.py). A client generator and the stateful fuzzing run
# (tests/api/test_schemathesis.py) follow them.
_SUBSCRIPTION = {"sub_id": "$response.body#/id"}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("/v1/webhooks", "post", "201"): {
        "GetWebhook": ("V1WebhooksSubIdGetWebhook", _SUBSCRIPTION),
        "Attempts": ("V1WebhooksSubIdAttemptsAttempts", _SUBSCRIPTION),
        "RotateSecret": ("V1WebhooksSubIdRotateSecretRotate", _SUBSCRIPTION),
        "Resume": ("V1WebhooksSubIdResumeResume", _SUBSCRIPTION),
        "Replay": ("V1WebhooksSubIdReplayReplay", _SUBSCRIPTION),
        "DeleteWebhook": ("V1WebhooksSubIdDeleteWebhook", _SUBSCRIPTION),
    },
    ("/v1/webhooks/{sub_id}/replay", "post", "202"): {
        "ReplayStatus": ("V1WebhooksSubIdReplaysReplayIdReplayStatus",
                         {"sub_id": "$request.path.sub_id", "replay_id": "$response.body#/replay_id"}),
    },
    ("/v1/permits/lookup", "post", "200"): {
        "GetPermit": ("V1PermitsPnGetPermit", {"pn": "$response.body#/found/0/permit/pn"}),
    },
    ("/v1/admin/terminals", "post", "201"): {
        "ListTerminals": ("V1AdminTerminalsTerminals", {}),
    },
}


def add_links(document: Any) -> None:
    """Put :data:`LINKS` into the generated OpenAPI document (Litestar's handlers cannot say them)."""
    from litestar.openapi.spec import Link

    for (path, method, status), links in LINKS.items():
        operation = getattr(document.paths[path], method)
        response = operation.responses[status]
        response.links = {name: Link(operation_id=operation_id, parameters=dict(parameters) or None)
                          for name, (operation_id, parameters) in links.items()}
