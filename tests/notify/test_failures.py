"""Receivers that fail, time out, answer 500s, redirect, go away; and then recover."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
import standardwebhooks

from verifier.lib.settings import Settings

from .conftest import Feed, permit
from .support import REPO, Inbox, NotifierThread, live_key, receiver, run_store, subscribe, wait_for

pytestmark = pytest.mark.integration


def seqs_by_permit(inbox: Inbox) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for payload in inbox.payloads():
        out.setdefault(payload["data"]["pn"], []).append(payload["data"]["seq"])
    return out


def test_500s_then_recovery_deliver_everything_in_order(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(i) for i in range(4)], seq=0)
    live_key(store_sync)
    # the first 12 requests fail (500, 503 with Retry-After 0, a slow answer past the read timeout), then all succeed
    plan = {n: (500, 0.0) for n in range(0, 12, 3)} | {n: (503, 0.0) for n in range(1, 12, 3)} | \
           {n: (204, 1.5) for n in range(2, 12, 3)}
    inbox = Inbox(answer=lambda n: plan.get(n, (204, 0.0)))
    with receiver(inbox) as (url, inbox), NotifierThread(settings.with_(notify_read_timeout_s=0.5)):
        sub = subscribe(settings.store_url, url)
        for round_ in range(5):
            feed.page([(permit(i, v=round_ + 2), "change") for i in range(4)])
        wait_for(lambda: len(inbox.ids()) == 20, 40, "all 20 changes")
        attempts = run_store(settings.store_url, lambda s: s.attempts(sub.id, 1000))
    for pn, seqs in seqs_by_permit(inbox).items():
        firsts = list(dict.fromkeys(seqs))
        assert firsts == sorted(firsts), (pn, seqs)  # never a later change before an earlier one
    outcomes = {a["outcome"] for a in attempts}
    assert outcomes == {"delivered", "failed"}
    errors = {a["error"] for a in attempts if a["outcome"] == "failed"}
    assert {"HTTP 500", "HTTP 503"} <= errors and any(e.startswith("timeout") for e in errors)
    # retries carry the same webhook-id, signed anew
    for delivery in inbox.deliveries:
        standardwebhooks.Webhook(sub.secret).verify(delivery.body, delivery.headers)


def test_an_endpoint_that_keeps_failing_is_paused_then_resumed(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=0)
    live_key(store_sync)
    failing = {"on": True}
    inbox = Inbox(answer=lambda n: (500, 0.0) if failing["on"] else (204, 0.0))
    quick_pause = settings.with_(notify_pause_after_failures=3, notify_pause_after_s=0.3)
    with receiver(inbox) as (url, inbox), NotifierThread(quick_pause):
        sub = subscribe(settings.store_url, url)
        feed.bump(permit(1).pn)
        feed.bump(permit(1).pn)
        paused = wait_for(lambda: run_store(settings.store_url, lambda s: s.get(sub.id)).status == "paused", 20,
                          "the endpoint to be paused")
        assert paused
        held = run_store(settings.store_url, lambda s: s.get(sub.id))
        assert held.paused_reason == "HTTP 500" and held.fails >= 3
        requests = inbox.requests
        failing["on"] = False
        time.sleep(1.0)
        assert inbox.requests == requests  # paused: nothing is tried
        run_store(settings.store_url, lambda s: s.resume(sub.id))
        wait_for(lambda: len(inbox.deliveries) == 2, 15, "what waited to arrive after the resume")
    assert [p["data"]["seq"] for p in inbox.payloads()] == [1, 2]


def test_410_gone_pauses_at_once(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=0)
    live_key(store_sync)
    with receiver(Inbox(answer=lambda n: (410, 0.0))) as (url, inbox), NotifierThread(settings):
        sub = subscribe(settings.store_url, url)
        feed.bump(permit(1).pn)
        wait_for(lambda: run_store(settings.store_url, lambda s: s.get(sub.id)).status == "paused", 15, "the pause")
    assert inbox.requests == 1


def test_a_redirect_is_not_followed(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=0)
    live_key(store_sync)

    class Redirecting(Inbox):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/hook":
                self.requests += 1
                await send({"type": "http.response.start", "status": 307,
                            "headers": [(b"location", b"/elsewhere"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await super().__call__(scope, receive, send)

    with receiver(Redirecting()) as (url, inbox), NotifierThread(settings):
        sub = subscribe(settings.store_url, url)
        feed.bump(permit(1).pn)
        attempts = wait_for(lambda: run_store(settings.store_url, lambda s: s.attempts(sub.id)), 15, "an attempt")
    assert attempts[0]["status"] == "307" and "redirects are not followed" in attempts[0]["error"]
    assert inbox.deliveries == []  # /elsewhere was never asked


def test_a_long_answer_is_not_read_past_the_cap(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=0)
    live_key(store_sync)

    class Chatty(Inbox):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            while (await receive()).get("more_body"):
                pass
            self.requests += 1
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(2000):  # 2,000 chunks of 1 KB, streamed
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    with receiver(Chatty()) as (url, inbox), NotifierThread(settings):
        sub = subscribe(settings.store_url, url)
        feed.bump(permit(1).pn)
        attempts = wait_for(lambda: run_store(settings.store_url, lambda s: s.attempts(sub.id)), 15, "an attempt")
    assert attempts[0]["outcome"] == "delivered" and attempts[0]["answer"] == "x" * 200


def test_a_message_not_delivered_in_the_window_is_dead_lettered_and_resent(settings: Settings, feed: Feed,
                                                                         store_sync: Any, tmp_path) -> None:  # type: ignore[no-untyped-def]
    feed.load([permit(1)], seq=0)
    live_key(store_sync)
    failing = {"on": True}
    inbox = Inbox(answer=lambda n: (500, 0.0) if failing["on"] else (204, 0.0))
    short = settings.with_(notify_retry_window_s=1.5, notify_pause_after_failures=1000)
    with receiver(inbox) as (url, inbox), NotifierThread(short):
        sub = subscribe(settings.store_url, url)
        feed.bump(permit(1).pn, "cancel", status="cancelled")
        letters = wait_for(lambda: run_store(settings.store_url, lambda s: s.dead_letters()), 20, "a dead letter")
        [letter] = letters
        assert (letter.subscription, letter.type) == (sub.id, "permit.cancelled") and letter.attempts >= 2
        assert run_store(settings.store_url, lambda s: s.backlog(sub.id, 4)) == 0
        failing["on"] = False
        # the CLI lists and resends it
        env = {"VERIFIER_STORE_URL": settings.store_url, "REDIS_URL": settings.redis_url}
        listed = subprocess.run([sys.executable, "-m", "verifier", "notify", "dead-letters", "list"], cwd=REPO,
                                env=env | _path_env(), capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and letter.id in listed.stdout and "permit.cancelled" in listed.stdout
        resent = subprocess.run([sys.executable, "-m", "verifier", "notify", "dead-letters", "resend", letter.id],
                                cwd=REPO, env=env | _path_env(), capture_output=True, text=True, timeout=60)
        assert resent.returncode == 0 and "resent 1" in resent.stdout
        [delivery] = wait_for(lambda: inbox.deliveries, 15, "the resent message")
    assert delivery.id == letter.webhook_id  # the same webhook-id: a receiver that had it drops it
    assert run_store(settings.store_url, lambda s: s.dead_letters()) == []


def _path_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
