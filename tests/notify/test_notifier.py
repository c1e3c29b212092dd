"""The notifier as a whole: reminders, verified notices, replays, gaps, several processes,
revoked keys, secret rotation, metrics."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import httpx
import orjson
import pytest
import standardwebhooks

from verifier.lib.redis_server import free_port
from verifier.lib.settings import Settings
from verifier.notify.reminders import today_in_china
from verifier.notify.store import StoreKeys

from .conftest import EMPLOYER_A, EMPLOYER_B, Feed, permit
from .support import NotifierThread, live_key, receiver, run_store, subscribe, wait_for

pytestmark = pytest.mark.integration


def ends_in(i: int, days: int, **changes: Any):  # type: ignore[no-untyped-def]
    return permit(i, vt=(today_in_china(time.time()) + dt.timedelta(days=days)).isoformat(), **changes)


def test_expiry_reminders_go_out_once_each_and_never_again_after_a_restart(settings: Settings, feed: Feed,
                                                                         store_sync: Any) -> None:
    records = [ends_in(1, 60), ends_in(2, 45), ends_in(3, 40), ends_in(4, 31), ends_in(5, 29),
               ends_in(6, 60, status="cancelled"), ends_in(7, 200), ends_in(8, 50, emp=EMPLOYER_B)]
    feed.load(records, seq=1)
    live_key(store_sync)
    live_key(store_sync, "k00000000p01", "partner")
    scanning = settings.with_(reminder_scan_interval_s=0.5)
    with receiver() as (url, inbox), receiver() as (partner_url, partner_inbox):
        platform = subscribe(settings.store_url, url, ("permit.expiring",), role="essc_platform")
        subscribe(settings.store_url, partner_url, ("*",), role="partner", key_id="k00000000p01",
                  employers=(EMPLOYER_A,))
        with NotifierThread(scanning):
            wait_for(lambda: len(inbox.deliveries) >= 5, 20, "the reminders")
            time.sleep(1.5)  # a second walk: nothing more
        with NotifierThread(scanning):  # a restart: nothing more either
            time.sleep(1.5)
    reminders = {p["data"]["pn"]: p["data"] for p in inbox.payloads()}
    assert len(inbox.deliveries) == 5  # each once
    assert {pn: d["days_before_end"] for pn, d in reminders.items()} == {
        records[0].pn: 60, records[1].pn: 45, records[2].pn: 45, records[3].pn: 31, records[7].pn: 60}
    one = reminders[records[0].pn]
    vt = dt.date.fromisoformat(records[0].vt)
    assert one["last_day_to_apply"] == (vt - dt.timedelta(days=30)).isoformat() and one["days_left"] == 60
    assert {p["type"] for p in inbox.payloads()} == {"permit.expiring"} and "seq" not in one
    # the partner hears of its own employer's permits only (not permit 8's)
    assert sorted(p["data"]["pn"] for p in partner_inbox.payloads()) == sorted(
        r.pn for r in (records[0], records[1], records[2], records[3]))
    assert store_sync.hget(StoreKeys.reminded, f"{platform.id} {records[0].pn}") == f"{records[0].vt} 60".encode()


def test_an_extension_starts_the_reminders_afresh(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([ends_in(1, 60)], seq=1)
    live_key(store_sync)
    with receiver() as (url, inbox), NotifierThread(settings.with_(reminder_scan_interval_s=0.5)):
        subscribe(settings.store_url, url, ("permit.expiring", "permit.extended"))
        wait_for(lambda: len(inbox.deliveries) == 1, 20, "the first reminder")
        feed.change(ends_in(1, 45, v=2), "extend")  # (an odd extension, but a new vt)
        wait_for(lambda: len(inbox.deliveries) == 3, 20, "the extension and the new vt's reminder")
    assert [p["type"] for p in inbox.payloads()] == ["permit.expiring", "permit.extended", "permit.expiring"]


def test_verified_notices_only_for_platforms_that_asked(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=1)
    live_key(store_sync, "k0000000ess1", "essc_platform")
    live_key(store_sync, "k0000000ess2", "essc_platform")
    batch = [{"t": int(time.time() * 1000), "key": "kexit", "role": "exit_entry", "terminal": "PVG-12", "kind": "qr",
              "profile": "ES1", "pn": permit(1).pn, "result": "VALID"},
             {"t": int(time.time() * 1000), "key": "kpart", "role": "partner", "terminal": "", "kind": "lookup",
              "profile": "", "pn": permit(1).pn, "result": "found=1"}]
    with receiver() as (on_url, on), receiver() as (off_url, off), NotifierThread(settings):
        subscribe(settings.store_url, on_url, ("*",), role="essc_platform", key_id="k0000000ess1")
        subscribe(settings.store_url, off_url, ("*",), role="essc_platform", key_id="k0000000ess2")
        run_store(settings.store_url, lambda s: s.set_verified_notices("k0000000ess1", True))
        time.sleep(1.0)
        store_sync.xadd("pv:audit", {"r": orjson.dumps(batch)})  # as the API's audit log writes it
        [delivery] = wait_for(lambda: on.deliveries, 15, "the verified notice")
        time.sleep(0.5)
    notice = delivery.payload
    assert notice["type"] == "permit.verified"
    assert notice["data"] == {"pn": permit(1).pn, "result": "VALID", "by_role": "exit_entry", "method": "qr",
                              "terminal": "PVG-12"}
    assert off.deliveries == []  # off by default


def test_a_replay_sends_the_changes_again_under_the_same_ids(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(i) for i in range(3)], seq=10)
    live_key(store_sync)
    with receiver() as (url, inbox), NotifierThread(settings):
        sub = subscribe(settings.store_url, url)
        for i in range(3):
            feed.bump(permit(i).pn)
        wait_for(lambda: len(inbox.deliveries) == 3, 15, "the changes")
        first_ids = {d.payload["data"]["seq"]: d.id for d in inbox.deliveries}
        replay = run_store(settings.store_url, lambda s: s.request_replay(sub.id, 11, None))
        status = wait_for(lambda: (run_store(settings.store_url, lambda s: s.replay_status(replay)) or {}).get(
            "state") == "done" and run_store(settings.store_url, lambda s: s.replay_status(replay)), 15, "the replay")
        wait_for(lambda: len(inbox.deliveries) == 5, 15, "the replayed changes")
        by_time = run_store(settings.store_url, lambda s: s.request_replay(sub.id, None, int((time.time() - 60) * 1000)))
        wait_for(lambda: len(inbox.deliveries) == 8, 15, "the changes since a time")
    assert status["complete"] == "1" and status["queued"] == "2"
    replayed = inbox.deliveries[3:5]
    assert sorted(d.payload["data"]["seq"] for d in replayed) == [12, 13]
    assert all(d.id == first_ids[d.payload["data"]["seq"]] for d in inbox.deliveries[3:])
    assert by_time.startswith("rp_")


def test_an_index_rebuilt_from_nothing_is_a_gap_said_once(settings: Settings, feed: Feed, redis_sync: Any,
                                                          store_sync: Any, caplog: pytest.LogCaptureFixture) -> None:
    feed.load([permit(1), permit(2)], seq=10)
    live_key(store_sync)
    with receiver() as (url, inbox), NotifierThread(settings), caplog.at_level(logging.ERROR, "verifier.notify"):
        subscribe(settings.store_url, url)
        feed.bump(permit(1).pn)
        wait_for(lambda: len(inbox.deliveries) == 1, 15, "a change")
        redis_sync.flushall()  # the index's Redis loses everything, its stream and group too
        rebuilt = Feed(redis_sync)
        rebuilt.load([permit(1, v=5), permit(2, v=5)], seq=40)  # what the sync job does: a resync at the head
        rebuilt.seq = 40
        rebuilt.change(permit(2, v=6))
        wait_for(lambda: len(inbox.deliveries) == 3, 20, "the gap notice and the next change")
    gap, after = inbox.payloads()[1:]
    assert gap["type"] == "notifications.gap" and (gap["data"]["first_seq"], gap["data"]["last_seq"]) == (12, 40)
    assert after["data"]["seq"] == 41
    lines = [r.getMessage() for r in caplog.records if "GAP" in r.getMessage()]
    assert len(lines) == 1 and "12 to 40" in lines[0]


def test_two_notifiers_share_the_partitions_and_one_takes_all_when_the_other_stops(settings: Settings, feed: Feed,
                                                                                  store_sync: Any) -> None:
    feed.load([permit(i) for i in range(40)], seq=0)
    live_key(store_sync)
    with receiver() as (url, inbox):
        subscribe(settings.store_url, url)
        first = NotifierThread(settings).__enter__()
        second = NotifierThread(settings).__enter__()
        try:
            wait_for(lambda: first.notifier is not None and second.notifier is not None
                     and len(first.notifier._leases) == len(second.notifier._leases) == 2, 20, "a share each")
            feed.page([(permit(i, v=2), "change") for i in range(40)])
            wait_for(lambda: len(inbox.deliveries) == 40, 20, "the first round")
            assert first.notifier.dispatcher.delivered > 0 and second.notifier.dispatcher.delivered > 0
            second.stop()
            wait_for(lambda: len(first.notifier._leases) == 4, 20, "the survivor to take every partition")
            feed.page([(permit(i, v=3), "change") for i in range(40)])
            wait_for(lambda: len(inbox.deliveries) == 80, 20, "the second round")
        finally:
            first.stop()
            second.stop()


def test_a_revoked_key_gets_nothing_more(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=0)
    live_key(store_sync)
    with receiver() as (url, inbox), NotifierThread(settings):
        subscribe(settings.store_url, url)
        feed.bump(permit(1).pn)
        wait_for(lambda: len(inbox.deliveries) == 1, 15, "a change")
        store_sync.hset("pv:apikey:k0000000000a", "revoked", repr(time.time()))  # as `api-keys revoke` does
        time.sleep(6.0)  # the notifiers look revocations up every 5 s
        feed.bump(permit(1).pn)
        time.sleep(1.0)
    assert len(inbox.deliveries) == 1


def test_after_a_rotation_both_secrets_verify_for_a_day(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=0)
    live_key(store_sync)
    with receiver() as (url, inbox), NotifierThread(settings):
        sub = subscribe(settings.store_url, url)
        rotated = run_store(settings.store_url, lambda s: s.rotate_secret(sub.id))
        feed.bump(permit(1).pn)
        [delivery] = wait_for(lambda: inbox.deliveries, 15, "a change")
    assert len([s for s in delivery.headers["webhook-signature"].split(" ") if s.startswith("v1,")]) == 2
    for secret in (sub.secret, rotated.secret):
        standardwebhooks.Webhook(secret).verify(delivery.body, delivery.headers)


def test_the_metrics(settings: Settings, feed: Feed, store_sync: Any) -> None:
    feed.load([permit(1)], seq=0)
    live_key(store_sync)
    port = free_port()
    with receiver() as (url, inbox), NotifierThread(settings) as running:
        assert running.notifier is not None
        running.notifier.metrics.serve(port)
        sub = subscribe(settings.store_url, url)
        feed.bump(permit(1).pn)
        wait_for(lambda: inbox.deliveries, 15, "a change")
        text = wait_for(lambda: (lambda t: "pv_notify_queue_depth" in t and t)(
            httpx.get(f"http://127.0.0.1:{port}/metrics").text), 15, "the gauges")
    assert f'pv_notify_attempts_total{{endpoint="{sub.id}",outcome="delivered"}} 1.0' in text
    assert "pv_notify_delivery_latency_seconds_count 1.0" in text
    assert 'pv_notify_enqueued_total{type="permit.changed"} 1.0' in text
    assert "pv_notify_leader 1.0" in text and "pv_notify_partitions_owned 4.0" in text
