"""The upstream client's strictness and retries (against the real simulator over HTTP)."""

from __future__ import annotations

import random

import msgspec
import pytest

from verifier.index.records import ChangeEvent
from verifier.lib import upstream_wire as wire
from verifier.sync.upstream_client import (
    Backoff,
    UpstreamClient,
    UpstreamProtocolError,
    check_page,
)


def _page(upstream, after: int, limit: int = 10) -> wire.FeedPage:
    feed_id, page_end, last_seq, head_time, now, events = upstream.feed_events(after, limit)
    decoded = [msgspec.msgpack.decode(e, type=ChangeEvent) for e in events]
    return wire.FeedPage(feed_id, after, page_end, last_seq, head_time, now, decoded)


def test_pages_that_break_the_interface_are_refused(sim) -> None:
    upstream, _, _ = sim
    upstream.random_events(30)
    good = _page(upstream, 5)
    check_page(good, 5, 10)
    replace = msgspec.structs.replace
    broken = {
        "asked for another cursor": (replace(good, after=4), 5),
        "an event missing in the middle (not dense)": (replace(good, events=good.events[:3] + good.events[4:],
                                                               page_end=good.page_end - 1), 5),
        "events cut off but page_end kept (truncated)": (replace(good, events=good.events[:5]), 5),
        "a head behind the page": (replace(good, last_seq=good.page_end - 1), 5),
        "no feed id": (replace(good, feed_id=""), 5),
        "events not starting after the cursor": (replace(good, after=6, page_end=16), 6),
    }
    for what, (page, after) in broken.items():
        with pytest.raises(UpstreamProtocolError):
            check_page(page, after, 10)
            pytest.fail(what)
    with pytest.raises(UpstreamProtocolError):
        check_page(good, 5, 9)  # more events than asked for


def test_backoff_is_full_jitter_and_capped() -> None:
    backoff = Backoff(base=0.1, cap=2.0, rng=random.Random(1))
    delays = [backoff.delay(attempt) for attempt in range(12) for _ in range(20)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert max(delays[:20]) <= 0.1 and max(delays[-20:]) > 1.0  # grows, then stays under the cap
    assert len(set(delays)) == len(delays)  # jittered


def test_retries_ride_out_a_flaky_upstream(sim) -> None:
    upstream, server, client = sim
    upstream.random_events(200)
    client.post("/admin/faults", json={"error_rate": 0.4, "truncate_rate": 0.3}).raise_for_status()
    with UpstreamClient(server.url, retries=30, backoff=Backoff(base=0.001, cap=0.01)) as flaky:
        pages = [flaky.feed(after, 50) for after in range(0, 200, 50)]
        trust = flaky.trust_list()
    assert [e.seq for p in pages for e in p.events] == list(range(1, 201))
    assert msgspec.json.decode(trust)["keys"]


def test_the_client_needs_a_url() -> None:
    with pytest.raises(ValueError):
        UpstreamClient("")
