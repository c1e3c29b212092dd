"""The sync job against the real simulator (HTTP) and a real Redis: the index equals the
upstream after an incremental sync, a FLUSHALL, a feed reset, a cursor too old, faults."""

from __future__ import annotations

import io
import threading

import pytest
import redis

from verifier.index.changes import CHANGES_CHANNEL, decode_change
from verifier.index.reader import SyncPermitIndex
from verifier.index.sync_status import read_sync_status_sync
from verifier.index.trust_store import TRUST_KEY
from verifier.index.writer import IndexWriter
from verifier.lib.redis_client import sync_client
from verifier.sync.job import SyncJob
from verifier.sync.upstream_client import UpstreamError

from .support import (
    assert_index_equals_upstream,
    settings_for,
    sync_thread,
    wait_caught_up,
    wait_for,
)


def test_first_start_loads_the_snapshot_then_follows_the_feed(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    upstream.random_events(700)  # history before the first start: in the snapshot
    with sync_thread(settings_for(redis_url, server.url)) as job:
        wait_caught_up(upstream, redis_sync)
        wait_for(lambda: job.counts.resyncs == 1, 10, "the resync to be counted")
        assert job.counts.records_loaded == upstream.count
        for _ in range(5):
            client.post("/admin/events/random", json={"count": 400}).raise_for_status()
        wait_caught_up(upstream, redis_sync)
        assert_index_equals_upstream(upstream, redis_sync)
        assert job.counts.resyncs == 1  # the rest came through the feed
        assert job.counts.events_read == 2000 and job.counts.events_applied == 2000
        state = IndexWriter(redis_sync).state()
        assert state.heartbeat_seq == upstream.seq and state.as_of is not None
        assert state.count == upstream.count
        # The trust list went into Redis as the upstream serves it.
        assert redis_sync.get(TRUST_KEY) == client.get("/trust-list").content
        status = wait_for(lambda: (s := read_sync_status_sync(redis_sync)) and s.cursor == upstream.seq and s,
                          5, "the status to show the cursor")
        assert status.role == "leader" and status.state == "following" and status.lag_events == 0
        assert status.feed_id == upstream.feed_id and status.resyncs == 1 and status.last_error is None
    stopped = read_sync_status_sync(redis_sync)
    assert stopped is not None and stopped.role == "stopped"
    assert IndexWriter(redis_sync).state().leader is None  # released on a clean stop


def test_cancellation_and_card_loss_reach_the_index_and_the_channel(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    with sync_thread(settings_for(redis_url, server.url)):
        wait_caught_up(upstream, redis_sync)
        subscriber = sync_client(redis_url)
        pubsub = subscriber.pubsub()
        pubsub.subscribe(CHANGES_CHANNEL)
        try:
            assert pubsub.get_message(timeout=5)["type"] == "subscribe"
            target = next(r for r in upstream.records() if r.status == "active" and r.cn)
            other = next(r for r in upstream.records() if r.status == "active" and r.cn and r.pn != target.pn)
            cancel = client.post("/admin/events", json={"type": "cancel", "pn": target.pn}).json()
            lost = client.post("/admin/events", json={"type": "card_lost", "pn": other.pn}).json()
            announced: dict[str, int] = {}
            while len(announced) < 2:
                message = pubsub.get_message(timeout=5)
                assert message is not None, f"no change message; got {announced}"
                if message["type"] != "message":
                    continue
                change = decode_change(message["data"])
                assert change.kind == "apply"
                for pn in change.permit_numbers:
                    announced[pn] = change.seq
            # Announced with the cursor after the page that applied each (one page or two).
            assert set(announced) == {target.pn, other.pn}
            assert announced[target.pn] >= cancel["seq"] and announced[other.pn] >= lost["seq"]
        finally:
            pubsub.close()
            subscriber.close()
        reader = SyncPermitIndex(redis_sync)
        cancelled = reader.get(target.pn)
        assert cancelled.status == "cancelled" and cancelled.v == target.v + 1
        by_card = reader.get_many("cn", [other.cn])[other.cn]
        assert by_card.pn == other.pn and by_card.card_status(other.cn) == "lost"


def test_flushall_while_running_is_rebuilt_from_a_snapshot(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    with sync_thread(settings_for(redis_url, server.url)) as job:
        wait_caught_up(upstream, redis_sync)
        upstream.random_events(300)
        redis_sync.flushall()  # Redis lost its data: no generation key any more
        upstream.random_events(300)
        wait_caught_up(upstream, redis_sync)
        wait_for(lambda: job.counts.resyncs == 2, 10, "the second resync to be counted")
        assert_index_equals_upstream(upstream, redis_sync)
        assert read_sync_status_sync(redis_sync).resync_reason.startswith("index not ready")


def test_a_reset_feed_forces_a_full_resync(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    settings = settings_for(redis_url, server.url)
    with sync_thread(settings):
        upstream.random_events(500)
        wait_caught_up(upstream, redis_sync)
    old_feed = upstream.feed_id
    # A restore from backup: a new feed from seq 0, and changes no event describes. More
    # events than the old cursor, so the old cursor is a valid position of the new feed
    # and only the feed id tells the two apart.
    client.post("/admin/faults", json={"reset_feed": True, "silent_changes": 40}).raise_for_status()
    upstream.random_events(800)
    assert upstream.feed_id != old_feed
    with sync_thread(settings) as job:
        wait_caught_up(upstream, redis_sync)
        wait_for(lambda: job.counts.resyncs == 1, 10, "the resync to be counted")
        assert "the upstream feed was reset" in read_sync_status_sync(redis_sync).resync_reason
        assert_index_equals_upstream(upstream, redis_sync)  # the silent changes too
        upstream.random_events(100)  # and it follows the new feed
        wait_caught_up(upstream, redis_sync)
        assert_index_equals_upstream(upstream, redis_sync)
        # the replaced generation is deleted beside the feed, keys and all
        writer = IndexWriter(redis_sync)
        live = writer.state().generation
        wait_for(lambda: writer.generations() == [live], 30, "the replaced generation to be dropped")
        leftovers = [k for k in redis_sync.scan_iter(match=b"{pv}:g[0-9]*:*") if not k.startswith(b"{pv}:g%d:" % live)]
        assert leftovers == []


def test_a_cursor_older_than_the_feed_window_forces_a_full_resync(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    settings = settings_for(redis_url, server.url)
    with sync_thread(settings):
        wait_caught_up(upstream, redis_sync)
    client.post("/admin/faults", json={"retain": 100}).raise_for_status()
    upstream.random_events(1000)  # while no sync job runs; the feed keeps only the last 100..125
    with sync_thread(settings) as job:
        wait_caught_up(upstream, redis_sync)
        wait_for(lambda: job.counts.resyncs == 1, 10, "the resync to be counted")
        assert job.counts.events_read == 0
        assert "410" in read_sync_status_sync(redis_sync).resync_reason
        assert_index_equals_upstream(upstream, redis_sync)


def test_failing_and_truncated_answers_are_retried_never_applied(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    with sync_thread(settings_for(redis_url, server.url)) as job:
        wait_caught_up(upstream, redis_sync)
        client.post("/admin/faults", json={"error_rate": 0.3, "truncate_rate": 0.3, "slow_ms": 5}).raise_for_status()
        for _ in range(6):
            upstream.random_events(300)
            wait_caught_up(upstream, redis_sync, timeout=60)
        client.post("/admin/faults", json={"error_rate": 1.0, "truncate_rate": 0.0}).raise_for_status()
        status = wait_for(lambda: (s := read_sync_status_sync(redis_sync)) and s.state == "failing" and s,
                          30, "the status to report the failure")
        assert "503" in status.last_error and status.errors > 0
        client.post("/admin/faults", json={"error_rate": 0.0, "slow_ms": 0}).raise_for_status()
        upstream.random_events(50)
        wait_caught_up(upstream, redis_sync, timeout=60)
        recovered = wait_for(lambda: (s := read_sync_status_sync(redis_sync)) and s.last_error is None and s,
                             10, "the error to clear")
        assert recovered.state == "following"
        assert_index_equals_upstream(upstream, redis_sync)
        # Every page the job applied was whole: events read == dense run of the feed.
        assert job.counts.events_read == upstream.seq
        assert job.counts.resyncs == 1


def test_every_applied_page_is_published_once_and_in_order(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    subscriber = sync_client(redis_url)
    pubsub = subscriber.pubsub()
    pubsub.subscribe(CHANGES_CHANNEL)
    pubsub.get_message(timeout=5)
    messages: list = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                messages.append(decode_change(message["data"]))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        with sync_thread(settings_for(redis_url, server.url, sync_page_size=250)):
            for _ in range(4):
                upstream.random_events(500)
                wait_caught_up(upstream, redis_sync)
            wait_for(lambda: messages and messages[-1].seq == upstream.seq, 5, "the last change message")
    finally:
        done.set()
        listener.join(5)
        pubsub.close()
        subscriber.close()
    assert messages[0].kind == "switch"
    applies = [m for m in messages if m.kind == "apply"]
    seqs = [m.seq for m in applies]
    assert seqs == sorted(set(seqs)) and seqs[-1] == upstream.seq  # no page twice, none out of order
    announced = {pn for m in applies for pn in m.permit_numbers}
    assert len(announced) > 500


def test_sync_cli_refuses_to_run_without_its_urls(monkeypatch) -> None:
    from verifier.cli import main

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("UPSTREAM_URL", raising=False)
    assert main(["sync"]) == 2
    assert main(["sync", "--redis", "redis://127.0.0.1:1/0"]) == 2


def test_index_that_cannot_be_reached_is_reported_and_recovered(sim, own_redis_server) -> None:
    upstream, server, client = sim
    url = own_redis_server.url
    probe = redis.Redis.from_url(url)
    try:
        with sync_thread(settings_for(url, server.url)) as job:
            wait_caught_up(upstream, probe)
            own_redis_server.stop()  # Redis down (clean shutdown: the AOF keeps the index)
            upstream.random_events(200)
            wait_for(lambda: job.counts.errors > 0, 20, "the job to notice Redis is gone")
            own_redis_server.start()
            wait_caught_up(upstream, probe, timeout=60)
            assert_index_equals_upstream(upstream, probe)
            assert job.counts.resyncs == 1  # the data survived the restart: no resync needed
    finally:
        probe.close()


def test_a_trust_list_the_verifier_would_refuse_is_never_stored(sim, redis_url, redis_sync) -> None:
    upstream, server, client = sim
    with sync_thread(settings_for(redis_url, server.url), trust_list_interval_s=0.1):
        wait_caught_up(upstream, redis_sync)
        good = wait_for(lambda: redis_sync.get(TRUST_KEY), 10, "the trust list to be stored")
        client.post("/admin/faults", json={"bad_trust_list": True}).raise_for_status()
        client.post("/admin/keys/rotate").raise_for_status()  # a change the job must look at
        status = wait_for(lambda: (s := read_sync_status_sync(redis_sync)) and s.last_error
                          and "refused" in s.last_error and s, 10, "the refusal to be reported")
        assert "trust list" in status.last_error
        assert redis_sync.get(TRUST_KEY) == good  # WIRE-FORMAT 4: the previous list stays
        client.post("/admin/faults", json={"bad_trust_list": False}).raise_for_status()
        rotated = client.get("/trust-list").content
        wait_for(lambda: redis_sync.get(TRUST_KEY) == rotated, 10, "the rotated list to be stored")


def test_a_snapshot_cut_off_mid_stream_keeps_its_load_and_the_next_resync_resumes_it(
        sim, redis_url, redis_sync) -> None:
    """The snapshot is read (and its records encoded) in the read-ahead thread: the
    upstream's error there is the resync's error, at the frame where it happened; what
    was written before stays (with its cursor) for the next resync to resume."""
    upstream, server, client = sim
    job = SyncJob(settings_for(redis_url, server.url), progress_stream=io.StringIO())
    job.fence = job.writer.acquire_leadership(job.owner, 60.0)
    assert job.fence is not None
    client.post("/admin/faults", json={"truncate_rate": 1.0}).raise_for_status()
    loaded = 0
    for _ in range(20):  # the cut falls after a random number of frames (0 to all)
        with pytest.raises(UpstreamError):
            job.resync("test")
        interrupted = job.writer.interrupted_load()
        assert interrupted is not None  # kept, not aborted
        loaded = interrupted[2]  # (generation, buckets, resync cursor)
        if 0 < loaded < upstream.count:
            break
    assert 0 < loaded < upstream.count, loaded
    assert not IndexWriter(redis_sync).state().ready  # nothing switched in
    assert [t.name for t in threading.enumerate() if t.name == "resync-read-ahead"] == []
    client.post("/admin/faults", json={"truncate_rate": 0.0}).raise_for_status()
    job.resync("test, again")
    assert job.counts.resyncs == 1 and job.counts.records_loaded == upstream.count - loaded
    assert job.writer.interrupted_load() is None
    assert_index_equals_upstream(upstream, redis_sync)
    job.upstream.close()
