"""kill -9 of ``verifier sync`` processes: at random instants, and of a leader with a standby."""

from __future__ import annotations

import random
import threading
import time

import pytest

from verifier.index.changes import CHANGES_CHANNEL, decode_change
from verifier.index.sync_status import read_sync_status_sync
from verifier.index.writer import IndexWriter
from verifier.lib.redis_client import sync_client

from tests.upstream.support import simulator

from .support import SyncProcess, assert_index_equals_upstream, wait_caught_up, wait_for


class _ChangeLog:
    """Every change message on the channel, collected in a thread."""

    def __init__(self, redis_url: str) -> None:
        self._client = sync_client(redis_url)
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(CHANGES_CHANNEL)
        self._pubsub.get_message(timeout=5)
        self.messages: list = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._done.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                self.messages.append(decode_change(message["data"]))

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()


@pytest.mark.slow
def test_kill_9_at_random_instants_loses_nothing_and_applies_nothing_twice(redis_url, redis_sync, tmp_path) -> None:
    """25 kill -9s of the sync job, while events flow, pages are cut short and resyncs
    happen (a feed reset, a FLUSHALL); after the last restart the index equals the upstream,
    and no page was ever applied twice (the published cursors only grow within a generation)."""
    rng = random.Random(20261127)
    changes = _ChangeLog(redis_url)
    kills = 0
    try:
        with simulator(permits=20_000, seed=31) as (upstream, server, client):
            client.post("/admin/faults", json={"truncate_rate": 0.05}).raise_for_status()
            client.post("/admin/event-rate", json={"rate": 400}).raise_for_status()
            log = tmp_path / "sync.log"
            process = SyncProcess(redis_url, server.url, log, VERIFIER_SYNC_PAGE_SIZE="200")
            try:
                wait_for(lambda: IndexWriter(redis_sync).state().ready, 60, "the first load")
                for round_ in range(25):
                    if round_ == 8:
                        client.post("/admin/faults", json={"reset_feed": True, "silent_changes": 25})
                    if round_ == 16:
                        redis_sync.flushall()
                    if round_ % 5 == 2:
                        upstream.random_events(rng.randrange(500, 3000))  # a burst: several pages
                    # Once it leads (after waiting out the dead leader's lock), a random instant
                    # of its work: loading a snapshot, applying a page, heartbeating, idling.
                    wait_for(lambda: f":{process.pid}:" in (IndexWriter(redis_sync).state().leader or ""),
                             15, "the new sync process to lead")
                    time.sleep(rng.uniform(0.0, 1.2))
                    process.kill()
                    kills += 1
                    process = SyncProcess(redis_url, server.url, log, VERIFIER_SYNC_PAGE_SIZE="200")
                client.post("/admin/event-rate", json={"rate": 0}).raise_for_status()
                client.post("/admin/faults", json={"truncate_rate": 0.0}).raise_for_status()
                wait_caught_up(upstream, redis_sync, timeout=90)
                assert_index_equals_upstream(upstream, redis_sync)
            finally:
                process.terminate()
    finally:
        changes.close()
    assert kills == 25
    text = log.read_text(errors="replace")
    assert text.count("leading with fence") >= 26  # every start led (first + 25 restarts)
    # The reset is noticed by its feed id, or by the old cursor being past the new head (410).
    assert "full resync: the upstream feed was reset" in text or "(410;" in text
    assert "full resync: index not ready" in text
    # Between two switches the published cursors strictly increase: no page was applied
    # twice. (Generation ids restart after a FLUSHALL, so segments are cut at switches.)
    segments: list[list[int]] = [[]]
    for message in changes.messages:
        if message.kind == "switch":
            segments.append([])
        else:
            segments[-1].append(message.seq)
    # The first load, then at least one resync that switched after the FLUSHALL (the index
    # ends equal to the upstream). A resync killed in the middle is resumed by the next job,
    # so the reset's and the 410's resyncs (or a running one and the flush's) may end in one switch.
    assert len(segments) >= 3
    for n, seqs in enumerate(segments):
        assert seqs == sorted(set(seqs)), f"segment {n} published a cursor twice or backwards"


@pytest.mark.slow
def test_a_standby_takes_over_from_a_killed_leader(redis_url, redis_sync, tmp_path) -> None:
    with simulator(permits=5000, seed=32) as (upstream, server, client):
        first = SyncProcess(redis_url, server.url, tmp_path / "a.log")
        second = SyncProcess(redis_url, server.url, tmp_path / "b.log")
        processes = {first.pid: first, second.pid: second}
        try:
            wait_caught_up(upstream, redis_sync, timeout=60)
            def leader_pid_now() -> int | None:
                # The lock holds "<fence>:<host>:<pid>:<random>"; None while nobody holds it.
                parts = (IndexWriter(redis_sync).state().leader or "").split(":")
                return int(parts[2]) if len(parts) == 4 else None

            leader_pid = wait_for(leader_pid_now, 10, "a leader")
            assert leader_pid in processes
            standby = next(p for pid, p in processes.items() if pid != leader_pid)
            assert standby.process.poll() is None  # waiting, not exited
            client.post("/admin/event-rate", json={"rate": 200}).raise_for_status()
            time.sleep(0.5)
            processes[leader_pid].kill()
            new_leader = wait_for(lambda: (pid := leader_pid_now()) != leader_pid and pid, 15,
                                  "the standby to take the lock")
            assert new_leader == standby.pid
            time.sleep(1.0)
            client.post("/admin/event-rate", json={"rate": 0}).raise_for_status()
            wait_caught_up(upstream, redis_sync, timeout=30)
            assert_index_equals_upstream(upstream, redis_sync)
            status = read_sync_status_sync(redis_sync)
            assert status.role == "leader" and f":{standby.pid}:" in status.instance
        finally:
            for process in processes.values():
                if process.process.poll() is None:
                    process.terminate()
                else:
                    process.kill()
    assert "standby (another sync job leads)" in (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
