"""Request and response bodies of the webhook subscriptions."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

EventName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^(\*|[a-z_]+\.[a-z_]+)$",
                                description='An event type (`permit.cancelled`, ...), or `*` for all.')]


class WebhookRequest(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, Meta(min_length=8, max_length=2000, description=(
        "Where to POST the messages: https:// (http:// only to loopback, for tests and demos)."))]
    events: Annotated[list[EventName], Meta(min_length=1, max_length=20, description=(
        'The event types to receive, or `["*"]` for every type the key\'s role may have.'))]
    description: Annotated[str, Meta(max_length=200, description="A note for the owner.")] = ""


class WebhookOut(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    description: str
    status: Literal["active", "paused"]
    """``paused``: nothing is sent (it kept failing, or answered 410) until its owner resumes it."""
    paused_reason: str | None
    created_at: str
    public_key: str
    """``whpk_...``: checks the ``v1a`` (Ed25519) signature of every message."""
    backlog: int
    """Messages queued, not yet delivered."""
    failing_since: str | None
    """When the current run of failed attempts began (None: the last attempt succeeded)."""
    last_error: str | None
    last_success_at: str | None


class WebhookCreated(msgspec.Struct):
    id: str
    secret: str
    """``whsec_...``: the ``v1`` (HMAC-SHA256) signing secret. Shown once."""
    public_key: str
    url: str
    events: list[str]
    status: Literal["active", "paused"]
    created_at: str


class WebhookList(msgspec.Struct):
    webhooks: list[WebhookOut]


class SecretRotated(msgspec.Struct):
    id: str
    secret: str
    """The new ``whsec_...`` secret. Shown once."""
    previous_secret_valid_until: str
    """Until then messages carry a signature under the previous secret too."""


class AttemptOut(msgspec.Struct, omit_defaults=True):
    at: str
    webhook_id: str
    type: str
    pn: str
    attempt: int
    outcome: Literal["delivered", "failed", "dead-lettered"]
    status: int | None = None
    """The receiver's HTTP status (absent: no answer)."""
    error: str | None = None
    duration_ms: float | None = None
    answer: str | None = None
    """The start of the receiver's answer."""


class AttemptsOut(msgspec.Struct):
    id: str
    status: Literal["active", "paused"]
    paused_reason: str | None
    failing_since: str | None
    last_error: str | None
    attempts: list[AttemptOut]
    """Newest first."""


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    since_seq: Annotated[float, Meta(ge=0, le=2**53, multiple_of=1,
                                     description="Every change after this upstream sequence number (an integer).")] | None = None
    since: Annotated[str, Meta(max_length=40, description="Every change made at or after this time (RFC 3339).")] | None = None


class ReplayOut(msgspec.Struct):
    replay_id: str
    state: Literal["queued", "running", "done", "failed"]
    status_url: str
    queued: int | None = None
    """Messages queued by the replay so far."""
    complete: bool | None = None
    """Done: whether the stream still held everything asked for (else the oldest change it held is
    ``oldest_seq``: look the permits up for what came before)."""
    oldest_seq: int | None = None
    reason: str | None = None


class PlatformSettings(msgspec.Struct, forbid_unknown_fields=True):
    verified_notices: bool
    """Send ``permit.verified`` ("your permit was verified") to this platform's subscriptions. Off by default."""


class DeadLetterOut(msgspec.Struct):
    id: str
    subscription: str
    webhook_id: str
    type: str
    attempts: int
    queued_at: str
    dead_at: str
    reason: str
    last_error: str
    payload: msgspec.Raw
    """The message as it would have been delivered."""


class DeadLettersOut(msgspec.Struct):
    dead_letters: list[DeadLetterOut]


class ResendRequest(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[Annotated[str, Meta(max_length=40)]], Meta(max_length=1000)] = []
    """Dead letter ids; or"""
    subscription: Annotated[str, Meta(max_length=40)] | None = None
    all: bool = False
    """Every dead letter (of ``subscription``, when given)."""


class ResendOut(msgspec.Struct):
    resent: list[str]
    refused: list[str]
    """Dead letters whose subscription is gone."""
    missing: list[str]
