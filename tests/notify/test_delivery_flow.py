"""From an applied change to a signed webhook at a real receiver, and what each party sees."""

from __future__ import annotations

from typing import Any

import pytest
import standardwebhooks

from verifier.lib.settings import Settings

from .conftest import EMPLOYER_A, EMPLOYER_B, Feed, permit
from .support import NotifierThread, live_key, receiver, subscribe, wait_for

pytestmark = pytest.mark.integration


def test_a_change_arrives_signed_in_the_standard_webhooks_format(settings: Settings, feed: Feed, redis_sync: Any,
                                                                 store_sync: Any) -> None:
    feed.load([permit(i) for i in range(5)], seq=100)
    live_key(store_sync)
    with receiver() as (url, inbox), NotifierThread(settings):
        sub = subscribe(settings.store_url, url)
        feed.bump(permit(1).pn, "cancel", status="cancelled")
        [delivery] = wait_for(lambda: inbox.deliveries, 15, "the delivery")
    # an independent implementation of the spec accepts it (v1, HMAC-SHA256 under the whsec_ secret)
    payload = standardwebhooks.Webhook(sub.secret).verify(delivery.body, delivery.headers)
    assert payload["type"] == "permit.cancelled"
    assert payload["data"]["pn"] == permit(1).pn and payload["data"]["seq"] == 101
    assert payload["data"]["permit"] == {"pn": permit(1).pn, "status": "cancelled", "cat": "B", "emp": EMPLOYER_A,
                                         "vf": "2024-01-01", "vt": "2027-12-31"}
    assert payload["timestamp"].endswith("Z")
    assert delivery.headers["webhook-id"].startswith("msg_")
    versions = [s.split(",", 1)[0] for s in delivery.headers["webhook-signature"].split(" ")]
    assert versions == ["v1", "v1a"]
    assert delivery.headers["content-type"] == "application/json"


def test_a_partner_hears_only_of_its_own_employers_permits(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1), permit(2, emp=EMPLOYER_B), permit(3)], seq=10)
    live_key(store_sync, "k00000000p01", "partner")
    with receiver() as (url, inbox), NotifierThread(settings):
        subscribe(settings.store_url, url, role="partner", key_id="k00000000p01", employers=(EMPLOYER_A,))
        feed.bump(permit(2).pn, "extend", vt="2029-12-31")   # another employer's: nothing
        feed.bump(permit(1).pn, "extend", vt="2029-12-31")
        feed.bump(permit(3).pn, "change", emp=EMPLOYER_B)     # moved away: told, with nothing but its number
        feed.bump(permit(2).pn, "change", emp=EMPLOYER_A)     # moved in: told in full
        wait_for(lambda: len(inbox.deliveries) >= 3, 15, "three deliveries")
    payloads = sorted(inbox.payloads(), key=lambda p: p["data"]["seq"])  # (parallel across permits)
    assert [(p["type"], p["data"]["pn"]) for p in payloads] == [
        ("permit.extended", permit(1).pn), ("permit.changed", permit(3).pn), ("permit.changed", permit(2).pn)]
    left, joined = payloads[1]["data"], payloads[2]["data"]
    assert left["employer_change"] == "left" and left["permit"] == {"pn": permit(3).pn}
    assert joined["employer_change"] == "joined" and joined["permit"]["emp"] == EMPLOYER_A
    assert "n" not in joined["permit"] and "ssn" not in joined["permit"]  # the partner key's fields only
