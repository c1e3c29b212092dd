"""kill -9 of the notifiers and of the sync job, in a loop, while changes flow: every change
is delivered, in order per permit, none lost.

The short variant always runs (10,000 changes, about a minute). The long one runs the same
loop over 100,000 changes and a kill every half second: ``VERIFIER_NOTIFY_LONG_KILL_TEST=1``
(run it before a release; it takes several minutes).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from verifier.index.writer import IndexWriter
from verifier.lib.redis_server import EmbeddedRedis
from verifier.lib.settings import Settings
from verifier.notify.events import CHANGE_TYPES

from tests.sync.support import SyncProcess
from tests.upstream.support import simulator

from .support import FAST, Inbox, NotifyProcess, live_key, receiver, subscribe, wait_for

pytestmark = pytest.mark.integration

LONG = os.environ.get("VERIFIER_NOTIFY_LONG_KILL_TEST") == "1"
CHANGES = 100_000 if LONG else 10_000
KILL_EVERY_S = 0.5 if LONG else 1.0
BURST = 250


def changes(inbox: Inbox) -> list[dict[str, Any]]:
    """The messages about changes of the feed (the admin's "*" has the reminders too)."""
    return [p for p in inbox.payloads() if p["type"] in CHANGE_TYPES.values()]


def assert_in_order_per_permit(inbox: Inbox) -> dict[str, list[int]]:
    """A permit's changes first arrive in seq order. A repeat (same message, same ``webhook-id``)
    may come late: a notifier whose lease lapsed while its request was on the way (2 s leases
    here, on a busy machine) can land it after the next holder sent the same message and the
    ones after it. A receiver drops it by its id (Standard Webhooks); README, Notifications."""
    arrivals: dict[str, list[int]] = {}  # every arrival, repeats included
    for payload in changes(inbox):
        seqs = arrivals.setdefault(payload["data"]["pn"], [])
        seq = payload["data"]["seq"]
        if seq not in seqs:
            assert not seqs or seq > max(seqs), f"a permit's change {seq} first arrived after its change {max(seqs)}"
        seqs.append(seq)
    return arrivals


def describe(expected: set[int], inbox: Inbox, store_sync: Any, redis_sync: Any, logs: Path | None = None) -> str:
    """What is where, when not everything arrived (for the failure message)."""
    from verifier.index.keys import KeyLayout
    from verifier.notify.store import GROUP, StoreKeys

    missing = sorted(expected - {p["data"]["seq"] for p in changes(inbox)})
    streams = sorted(k.decode() for k in store_sync.scan_iter(match=StoreKeys.outbox("*", 0)[:-1] + "*"))
    lengths = {s: store_sync.xlen(s) for s in streams}
    pending = {s: store_sync.xpending(s, GROUP)["pending"] for s in streams}
    groups = redis_sync.xinfo_groups(KeyLayout().changelog)
    return (f"{len(missing)} missing (first {missing[:10]}); outbox lengths {lengths}; pending {pending}; "
            f"cursors {store_sync.hgetall(StoreKeys.cursors)}; change stream groups {groups}; "
            f"leases {[store_sync.get(StoreKeys.lease(p)) for p in range(4)]}; pending by consumer "
            f"{ {s: store_sync.xpending(s, GROUP)['consumers'] for s in streams} }; notifier warnings "
            f"{_warnings(logs)}")


def _warnings(logs: Path | None) -> list[str]:
    """The notifiers' warning and error lines (the last 40), for a failure message."""
    if logs is None:
        return []
    lines = [line for path in sorted(logs.glob("notify-*.log"))
             for line in path.read_text(errors="replace").splitlines()
             if "WARNING" in line or "ERROR" in line or "Traceback" in line or "Error" in line]
    return lines[-40:]


@pytest.mark.slow
def test_kill_9_in_a_loop_loses_nothing_and_keeps_the_order(redis_url: str, redis_sync: Any,
                                                           store_server: EmbeddedRedis, store_sync: Any,
                                                           tmp_path: Path) -> None:
    rng = random.Random(20261207)
    settings = Settings(redis_url=redis_url, store_url=store_server.url, **FAST)  # type: ignore[arg-type]
    kills = {"sync": 0, "notify": 0}
    with simulator(permits=3000, seed=41) as (upstream, server, _client), receiver() as (url, inbox):
        live_key(store_sync)
        subscribe(store_server.url, url)
        sync = SyncProcess(redis_url, server.url, tmp_path / "sync.log")
        notifiers = [NotifyProcess(settings, tmp_path / f"notify-{i}.log") for i in range(2)]
        try:
            wait_for(lambda: IndexWriter(redis_sync).state().ready, 60, "the first load")
            made = 0
            next_kill = time.monotonic() + KILL_EVERY_S
            while made < CHANGES:
                upstream.random_events(min(BURST, CHANGES - made))
                made = upstream.seq
                time.sleep(0.25 if not LONG else 0.1)
                if time.monotonic() >= next_kill:
                    next_kill = time.monotonic() + KILL_EVERY_S * rng.uniform(0.5, 1.5)
                    victim = rng.randrange(3)
                    if victim == 2:
                        sync.kill()
                        kills["sync"] += 1
                        sync = SyncProcess(redis_url, server.url, tmp_path / "sync.log")
                    else:
                        notifiers[victim].kill()
                        kills["notify"] += 1
                        notifiers[victim] = NotifyProcess(settings, tmp_path / f"notify-{victim}.log")
            expected = set(range(1, upstream.seq + 1))
            try:
                wait_for(lambda: expected <= {p["data"]["seq"] for p in changes(inbox)}, 180 if LONG else 90,
                         f"all {len(expected)} changes at the receiver")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; {describe(expected, inbox, store_sync, redis_sync, tmp_path)}") from None
        finally:
            sync.terminate()
            for notifier in notifiers:
                notifier.terminate()
    assert kills["sync"] >= 2 and kills["notify"] >= 3, kills
    arrivals = assert_in_order_per_permit(inbox)
    delivered = [seq for seqs in arrivals.values() for seq in seqs]
    assert set(delivered) == expected  # every change, nothing invented
    assert sum(len(set(seqs)) for seqs in arrivals.values()) == len(expected)  # each change under one permit
    repeats = len(delivered) - len(expected)
    assert repeats < len(expected) // 10  # at least once, but a crash repeats little
    assert not [p for p in inbox.payloads() if p["type"] == "notifications.gap"]  # nothing was missed
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("notify-*.log"))
    assert logs.count("taken over") > 4  # the survivors (and the restarted) took the partitions over
