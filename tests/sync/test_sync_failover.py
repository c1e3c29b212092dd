"""Failover of ``verifier sync`` processes (issue 11, defect 4): a restarted job reclaims its
dead predecessor's lock, a paused old leader cannot write, a resync killed in the middle
resumes from its resync cursor, and ten kill -9s at random moments lose no event and apply
none twice (``verifier index check`` against the upstream afterwards).

``VERIFIER_SYNC_LONG_KILL_TEST=1`` runs the kill test longer: 60,000 permits, 30 kills.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from verifier.index.change_stream import decode_entry
from verifier.index.keys import KeyLayout
from verifier.index.writer import IndexWriter

from tests.upstream.support import simulator

from .support import REPO, SyncProcess, assert_index_equals_upstream, wait_caught_up, wait_for

LONG = os.environ.get("VERIFIER_SYNC_LONG_KILL_TEST") == "1"


def _leader_pid(redis_sync) -> int | None:
    parts = (IndexWriter(redis_sync).state().leader or "").split(":")
    return int(parts[2]) if len(parts) == 4 else None


def _fence(redis_sync) -> int:
    return int((IndexWriter(redis_sync).state().leader or "0:").split(":")[0])


def _index_check(redis_url: str, upstream_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verifier", "index", "check", "--redis", redis_url, "--upstream", upstream_url,
         "--wait", "60"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def _applied_seqs(redis_sync) -> Counter[tuple[str, int]]:
    """(feed, seq) of every change the index applied from the feed (its change stream)."""
    seen: Counter[tuple[str, int]] = Counter()
    for entry_id, fields in redis_sync.xrange(KeyLayout().changelog):
        entry = decode_entry(entry_id, fields)
        if entry.is_change:
            seen[(entry.feed, entry.seq)] += 1
    return seen


def test_a_restarted_lone_job_reclaims_its_dead_predecessors_lock(redis_url, redis_sync, tmp_path) -> None:
    """The restarted job does not wait out the lock's TTL: it sees its own identity (the host)
    with a pid that is gone, and takes the lock over with a higher fence."""
    with simulator(permits=2000, seed=41) as (upstream, server, client):
        log = tmp_path / "sync.log"
        # A long TTL, so that only a reclaim (not the expiry) can explain a quick takeover.
        first = SyncProcess(redis_url, server.url, log, VERIFIER_SYNC_LOCK_TTL_S="600")
        second = None
        try:
            wait_caught_up(upstream, redis_sync)
            fence = _fence(redis_sync)
            first.kill()
            second = SyncProcess(redis_url, server.url, log, VERIFIER_SYNC_LOCK_TTL_S="600")
            wait_for(lambda: _leader_pid(redis_sync) == second.pid, 60, "the restarted job to lead")
            assert _fence(redis_sync) > fence
            upstream.random_events(300)
            wait_caught_up(upstream, redis_sync)
            assert_index_equals_upstream(upstream, redis_sync)
        finally:
            if second is not None:
                assert second.terminate() == 0
    text = log.read_text()
    assert f"reclaimed the lock of its dead predecessor (pid {first.pid})" in text


def test_a_live_job_of_the_same_host_is_not_robbed(redis_url, redis_sync, tmp_path) -> None:
    """Same identity (host) but the holder's pid is alive: the second job stands by."""
    with simulator(permits=1000, seed=42) as (upstream, server, client):
        first = SyncProcess(redis_url, server.url, tmp_path / "a.log")
        second = None
        try:
            wait_caught_up(upstream, redis_sync)
            second = SyncProcess(redis_url, server.url, tmp_path / "b.log")
            wait_for(lambda: "standby (another sync job leads)" in (tmp_path / "b.log").read_text(), 60,
                     "the second job to stand by")
            assert _leader_pid(redis_sync) == first.pid
        finally:
            first.terminate()
            if second is not None:
                second.terminate()
    assert "reclaimed" not in (tmp_path / "b.log").read_text()
    assert "took over" not in (tmp_path / "b.log").read_text()


def test_a_standby_takes_over_at_once_from_a_leader_whose_process_died(redis_url, redis_sync, tmp_path) -> None:
    """The lock's TTL is 600 s here, so only the dead leader's vanished liveness subscription
    (its socket closed by the kernel) can explain the takeover."""
    with simulator(permits=1000, seed=46) as (upstream, server, client):
        ttl = {"VERIFIER_SYNC_LOCK_TTL_S": "600"}
        a = SyncProcess(redis_url, server.url, tmp_path / "a.log", VERIFIER_SYNC_INSTANCE="node-a", **ttl)
        b = SyncProcess(redis_url, server.url, tmp_path / "b.log", VERIFIER_SYNC_INSTANCE="node-b", **ttl)
        try:
            wait_caught_up(upstream, redis_sync)
            leader = wait_for(lambda: _leader_pid(redis_sync), 10, "a leader")
            old, new = (a, b) if leader == a.pid else (b, a)
            wait_for(lambda: "standby (another sync job leads)" in new.log_path.read_text(), 60, "a standby")
            fence = _fence(redis_sync)
            old.kill()
            wait_for(lambda: _leader_pid(redis_sync) == new.pid, 60, "the standby to lead")
            assert _fence(redis_sync) > fence
            upstream.random_events(200)
            wait_caught_up(upstream, redis_sync)
            assert_index_equals_upstream(upstream, redis_sync)
        finally:
            for process in (a, b):
                if process.process.poll() is None:
                    process.terminate()
                else:
                    process.kill()
    assert "whose connection to Redis is gone (dead)" in new.log_path.read_text()


def test_a_paused_leader_cannot_write_after_a_standby_took_over(redis_url, redis_sync, tmp_path) -> None:
    """SIGSTOP the leader past its lock's TTL; the standby leads with a higher fence; the old one,
    resumed, finds its fence refused and stands by; the index stays equal to the upstream."""
    with simulator(permits=2000, seed=43) as (upstream, server, client):
        a = SyncProcess(redis_url, server.url, tmp_path / "a.log", VERIFIER_SYNC_INSTANCE="node-a")
        b = SyncProcess(redis_url, server.url, tmp_path / "b.log", VERIFIER_SYNC_INSTANCE="node-b")
        try:
            wait_caught_up(upstream, redis_sync)
            leader = wait_for(lambda: _leader_pid(redis_sync), 10, "a leader")
            old, new = (a, b) if leader == a.pid else (b, a)
            fence = _fence(redis_sync)
            client.post("/admin/event-rate", json={"rate": 200}).raise_for_status()
            os.kill(old.pid, signal.SIGSTOP)
            wait_for(lambda: _leader_pid(redis_sync) == new.pid, 30, "the standby to lead")
            assert _fence(redis_sync) > fence
            os.kill(old.pid, signal.SIGCONT)
            wait_for(lambda: "lost the leadership" in old.log_path.read_text(), 30, "the old leader to step down")
            client.post("/admin/event-rate", json={"rate": 0}).raise_for_status()
            wait_caught_up(upstream, redis_sync)
            assert _leader_pid(redis_sync) == new.pid
            assert_index_equals_upstream(upstream, redis_sync)
            assert max(_applied_seqs(redis_sync).values()) == 1
        finally:
            for process in (a, b):
                with_signal = process.process.poll() is None
                if with_signal:
                    os.kill(process.pid, signal.SIGCONT)
                process.terminate()


def test_a_resync_killed_in_the_middle_resumes_from_its_resync_cursor(redis_url, redis_sync, tmp_path) -> None:
    """kill -9 while the first load is half done: the next job takes that very generation over
    at its resync cursor (it does not start a new one) and switches it in complete."""
    with simulator(permits=60_000, seed=44) as (upstream, server, client):
        log = tmp_path / "sync.log"
        first = SyncProcess(redis_url, server.url, log)
        second = None
        writer = IndexWriter(redis_sync)
        try:
            interrupted = wait_for(lambda: (found := writer.interrupted_load()) and found[2] > 0 and found, 60,
                                   "the load to have committed a chunk", interval=0.005)
            first.kill()
            generation, _, loaded = writer.interrupted_load()  # what the kill left
            assert generation == interrupted[0] and loaded >= interrupted[2]
            upstream.random_events(500)  # the upstream moves on meanwhile
            second = SyncProcess(redis_url, server.url, log)
            wait_caught_up(upstream, redis_sync, timeout=120)
            assert writer.pointer().generation == generation  # the same load, finished
            assert_index_equals_upstream(upstream, redis_sync)
        finally:
            if second is not None:
                second.terminate()
    text = log.read_text()
    if loaded < 60_000:  # (the kill may land after the last chunk, before the switch)
        assert f"resuming the interrupted resync of generation {generation} from record {loaded}" in text
    written = [line for line in text.splitlines() if "resync done" in line]
    assert len(written) == 1 and "60500 records" not in written[0]
    # "N records (M written)": the resumed load wrote what was missing or had changed, not all again.
    total, rest = written[0].split("resync done: ")[1].split(" records (")
    assert int(rest.split(" written")[0]) < int(total)


def test_ten_kills_at_random_moments_lose_no_event_and_apply_none_twice(redis_url, redis_sync, tmp_path) -> None:
    """kill -9 of the sync job ten times (thirty with VERIFIER_SYNC_LONG_KILL_TEST=1) at random
    moments: during full resyncs (the first load, a feed reset, a FLUSHALL) and while following
    the feed under a steady event rate. Afterwards `verifier index check` finds the index equal
    to the upstream record by record, and the change stream holds every applied event once."""
    rng = random.Random(20261207)
    permits, kills = (60_000, 30) if LONG else (4_000, 10)
    with simulator(permits=permits, seed=45) as (upstream, server, client):
        client.post("/admin/event-rate", json={"rate": 150}).raise_for_status()
        log = tmp_path / "sync.log"
        env = {"VERIFIER_SYNC_PAGE_SIZE": "100", "VERIFIER_CHANGE_STREAM_MAXLEN": "10000000"}
        process = SyncProcess(redis_url, server.url, log, **env)
        try:
            for round_ in range(kills):
                if round_ == kills // 3:
                    client.post("/admin/faults", json={"reset_feed": True, "silent_changes": 20}).raise_for_status()
                if round_ == 2 * kills // 3:
                    redis_sync.flushall()
                if round_ % 4 == 1:
                    upstream.random_events(rng.randrange(200, 1500))  # a burst: several pages
                wait_for(lambda: _leader_pid(redis_sync) == process.pid, 30, "the new sync process to lead")
                time.sleep(rng.uniform(0.0, 2.0 if LONG else 0.8))  # a random moment of its work
                process.kill()
                process = SyncProcess(redis_url, server.url, log, **env)
            client.post("/admin/event-rate", json={"rate": 0}).raise_for_status()
            upstream.random_events(300)  # the last job follows the feed too, whatever it was killed in
            wait_caught_up(upstream, redis_sync, timeout=120)
            check = _index_check(redis_url, server.url)
            assert check.returncode == 0, check.stdout + check.stderr
            assert_index_equals_upstream(upstream, redis_sync)
        finally:
            process.terminate()
    applied = _applied_seqs(redis_sync)
    twice = {key: n for key, n in applied.items() if n > 1}
    assert not twice, f"events applied more than once: {sorted(twice)[:5]}"
    assert applied  # the stream did record the applied events
    text = log.read_text(errors="replace")
    assert text.count("leading with fence") >= kills + 1
