"""Webhook subscriptions on behalf of the calling key: what it may subscribe to, where to.

The records live in the store of record (``verifier.notify.store``), reached through the
worker's client of it (``Runtime.store``: ``Settings.store_url``, else the index's); the notifier
(``verifier notify``) reads them there. What a subscription's messages carry is decided
here, once, at creation, by the one table of data minimisation
(:func:`verifier.api.auth.roles.permit_fields`): a partner's messages name only its
employers' permits and the fields its key may see.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from verifier.api.auth.keys import Caller
from verifier.api.auth.roles import Role, permit_fields
from verifier.api.webhooks.schemas import (
    AttemptOut,
    AttemptsOut,
    DeadLetterOut,
    ReplayOut,
    ReplayRequest,
    WebhookCreated,
    WebhookOut,
    WebhookRequest,
)
from verifier.lib.problems import Problem
from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE
from verifier.lib.settings import Settings
from verifier.notify import events
from verifier.notify.store import DeadLetter, NotifyStore, Owner, Subscription, SubscriptionLimit
from verifier.notify.urls import AddressPolicy, UrlRefused, resolve_target

__all__ = ["WebhookService"]

T = TypeVar("T")


def _time(ms: int) -> str | None:
    return events.rfc3339(ms / 1000) if ms else None


def _parse_time(text: str) -> float:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(422, "since: not an RFC 3339 time (2026-11-27T10:31:02Z).") from None
    if when.tzinfo is None:
        raise Problem(422, "since: give the time zone (Z or +08:00).")
    return when.timestamp()


class WebhookService:
    def __init__(self, settings: Settings, store_client: Callable[[], AsyncRedisClient | None]) -> None:
        self.settings = settings
        self._store_client = store_client
        """The worker's client of the store of record (the runtime's, once started)."""
        self.policy = AddressPolicy.from_settings(settings.webhook_allow_loopback, settings.webhook_allow_networks)

    @property
    def store(self) -> NotifyStore:
        client = self._store_client()
        if client is None:
            raise Problem(503, "The store of record is not reachable yet; retry shortly.", headers={"Retry-After": "1"})
        return NotifyStore(client)

    async def _io(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except REDIS_UNAVAILABLE:
            raise Problem(503, "The store of record cannot be reached; retry shortly.",
                          headers={"Retry-After": "1"}) from None

    async def _visible(self, caller: Caller, sub_id: str) -> Subscription:
        """The caller's own subscription (an admin sees every one); 404 for any other."""
        sub = await self._io(lambda: self.store.get(sub_id)) if sub_id.startswith("wh_") else None
        if sub is None or (caller.role != Role.ADMIN and sub.key_id != caller.key_id):
            raise Problem(404, "No such webhook subscription.")
        return sub

    async def _out(self, sub: Subscription) -> WebhookOut:
        partitions = await self._io(lambda: self.store.partitions(self.settings.notify_partitions))
        backlog = await self._io(lambda: self.store.backlog(sub.id, partitions))
        return WebhookOut(
            id=sub.id, url=sub.url, events=list(sub.events), description=sub.description, status=sub.status,
            paused_reason=sub.paused_reason or None, created_at=events.rfc3339(sub.created_ms / 1000),
            public_key=sub.public_key, backlog=backlog, failing_since=_time(sub.fail_since_ms),
            last_error=(sub.last_error or None) if sub.fails else None, last_success_at=_time(sub.last_success_ms))

    # -- subscriptions ---------------------------------------------------------------------

    async def create(self, caller: Caller, request: WebhookRequest) -> WebhookCreated:
        allowed = events.SUBSCRIBABLE[caller.role.value]
        wanted = list(dict.fromkeys(request.events))
        if events.ALL in wanted and len(wanted) > 1:
            raise Problem(422, 'events: "*" stands alone (it means every type this key may have).')
        refused = [e for e in wanted if e != events.ALL and e not in allowed]
        if refused:
            raise Problem(422, f"events: {', '.join(refused)} cannot be had by a {caller.role.value} key; "
                               f"one of: {', '.join(sorted(allowed))}, or *.")
        try:
            await resolve_target(request.url, self.policy)
        except UrlRefused as exc:
            raise Problem(422, f"url: {exc}.") from None
        owner = Owner(key_id=caller.key_id, role=caller.role.value, employers=tuple(sorted(caller.employers)),
                      fields=permit_fields(caller.role, caller.full_fields))
        try:
            sub = await self._io(lambda: self.store.create(owner, request.url, wanted, request.description))
        except SubscriptionLimit as exc:
            raise Problem(409, str(exc) + "; delete one first.") from None
        return WebhookCreated(id=sub.id, secret=sub.secret, public_key=sub.public_key, url=sub.url,
                              events=list(sub.events), status=sub.status,
                              created_at=events.rfc3339(sub.created_ms / 1000))

    async def list(self, caller: Caller) -> list[WebhookOut]:
        subs = await self._io(lambda: self.store.list(None if caller.role == Role.ADMIN else caller.key_id))
        return [await self._out(s) for s in subs]

    async def get(self, caller: Caller, sub_id: str) -> WebhookOut:
        return await self._out(await self._visible(caller, sub_id))

    async def delete(self, caller: Caller, sub_id: str) -> None:
        sub = await self._visible(caller, sub_id)
        await self._io(lambda: self.store.delete(sub.id))

    async def rotate(self, caller: Caller, sub_id: str) -> Subscription:
        sub = await self._visible(caller, sub_id)
        rotated = await self._io(lambda: self.store.rotate_secret(sub.id))
        if rotated is None:
            raise Problem(404, "No such webhook subscription.")
        return rotated

    async def resume(self, caller: Caller, sub_id: str) -> WebhookOut:
        sub = await self._visible(caller, sub_id)
        resumed = await self._io(lambda: self.store.resume(sub.id))
        if resumed is None:
            raise Problem(404, "No such webhook subscription.")
        return await self._out(resumed)

    async def attempts(self, caller: Caller, sub_id: str, limit: int) -> AttemptsOut:
        sub = await self._visible(caller, sub_id)
        rows = await self._io(lambda: self.store.attempts(sub.id, limit))
        out = []
        for row in rows:
            status = row.get("status", "")
            out.append(AttemptOut(
                at=events.rfc3339(int(row.get("t") or 0) / 1000), webhook_id=row.get("i", ""), type=row.get("y", ""),
                pn=row.get("pn", ""), attempt=int(row.get("n") or 0),
                outcome=row.get("outcome", "failed"),  # type: ignore[arg-type]
                status=int(status) if status.isdigit() else None, error=row.get("error") or None,
                duration_ms=float(row["ms"]) if row.get("ms") else None, answer=row.get("answer") or None))
        return AttemptsOut(id=sub.id, status=sub.status, paused_reason=sub.paused_reason or None,
                           failing_since=_time(sub.fail_since_ms), last_error=sub.last_error or None, attempts=out)

    # -- replay ----------------------------------------------------------------------------

    async def replay(self, caller: Caller, sub_id: str, request: ReplayRequest) -> ReplayOut:
        sub = await self._visible(caller, sub_id)
        if (request.since_seq is None) == (request.since is None):
            raise Problem(422, "Give since_seq (an upstream sequence number) or since (an RFC 3339 time), not both.")
        since_ms = int(_parse_time(request.since) * 1000) if request.since is not None else None
        since_seq = int(request.since_seq) if request.since_seq is not None else None
        replay_id = await self._io(lambda: self.store.request_replay(sub.id, since_seq, since_ms))
        return ReplayOut(replay_id=replay_id, state="queued", status_url=f"/v1/webhooks/{sub.id}/replays/{replay_id}")

    async def replay_status(self, caller: Caller, sub_id: str, replay_id: str) -> ReplayOut:
        sub = await self._visible(caller, sub_id)
        status = await self._io(lambda: self.store.replay_status(replay_id)) if replay_id.startswith("rp_") else None
        if status is None or status.get("sub") != sub.id:
            raise Problem(404, "No such replay.")
        state = status.get("state", "queued")
        return ReplayOut(
            replay_id=replay_id, state=state if state in ("queued", "running", "done", "failed") else "queued",  # type: ignore[arg-type]
            status_url=f"/v1/webhooks/{sub.id}/replays/{replay_id}",
            queued=int(status["queued"]) if status.get("queued") else None,
            complete=status.get("complete") == "1" if status.get("complete") else None,
            oldest_seq=int(status["oldest_seq"]) if status.get("oldest_seq") else None,
            reason=status.get("reason") or None)

    # -- the e-card platform's setting ----------------------------------------------------------

    async def verified_notices(self, caller: Caller) -> bool:
        return await self._io(lambda: self.store.verified_notices(caller.key_id))

    async def set_verified_notices(self, caller: Caller, on: bool) -> None:
        await self._io(lambda: self.store.set_verified_notices(caller.key_id, on))

    # -- dead letters (admin) -------------------------------------------------------------------

    async def dead_letters(self, subscription: str | None, limit: int) -> list[DeadLetterOut]:
        letters = await self._io(lambda: self.store.dead_letters(subscription, limit))
        return [_dead_out(letter) for letter in letters]

    async def resend(self, ids: list[str], subscription: str | None, every: bool) -> tuple[list[str], list[str], list[str]]:
        if every:
            letters = await self._io(lambda: self.store.dead_letters(subscription, limit=1_000_000))
            missing: list[str] = []
        else:
            found: list[DeadLetter] = []
            missing = []
            for letter_id in dict.fromkeys(ids):
                letter = await self._io(lambda: self.store.dead_letter(letter_id))
                if letter is None:
                    missing.append(letter_id)
                else:
                    found.append(letter)
            letters = found
        resent, refused = await self._io(lambda: self.store.resend(letters))
        return resent, refused, missing


def _dead_out(letter: DeadLetter) -> DeadLetterOut:
    try:
        msgspec.json.decode(letter.body)
        payload: Any = msgspec.Raw(letter.body)
    except msgspec.DecodeError:
        payload = msgspec.Raw(b"null")
    return DeadLetterOut(id=letter.id, subscription=letter.subscription, webhook_id=letter.webhook_id,
                         type=letter.type, attempts=letter.attempts,
                         queued_at=events.rfc3339(letter.queued_ms / 1000),
                         dead_at=events.rfc3339(letter.dead_at_ms / 1000), reason=letter.reason,
                         last_error=letter.last_error, payload=payload)
