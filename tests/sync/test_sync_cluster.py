"""The sync job against a local 6-node Redis Cluster, including a primary killed mid-sync."""

from __future__ import annotations

import pytest

from verifier.index.keys import KeyLayout
from verifier.lib.redis_client import sync_client

from tests.upstream.support import simulator

from .support import assert_index_equals_upstream, settings_for, sync_thread, wait_caught_up, wait_for


@pytest.mark.slow
def test_cluster_sync_survives_the_index_primary_killed_mid_sync(redis_cluster, redis_cluster_url) -> None:
    probe = sync_client(redis_cluster_url)
    try:
        with simulator(permits=10_000, seed=41) as (upstream, server, client):
            with sync_thread(settings_for(redis_cluster_url, server.url, sync_page_size=200)) as job:
                wait_caught_up(upstream, probe, timeout=60)
                assert_index_equals_upstream(upstream, probe)
                client.post("/admin/event-rate", json={"rate": 300}).raise_for_status()
                upstream.random_events(3000)  # a backlog: the job is mid-way through pages
                # Kill the primary serving the index's slot (every index key shares {pv}).
                killed = redis_cluster.kill_primary(KeyLayout().current)
                assert not killed.running
                # It writes every 50 ms (pages, heartbeats), so it runs into the dead primary.
                wait_for(lambda: job.counts.errors > 0, 30, "the job to run into the failover")
                upstream.random_events(1000)
                client.post("/admin/event-rate", json={"rate": 0}).raise_for_status()
                # Recovery: after the replica is promoted the job finishes the feed; writes
                # lost with the old primary are re-read from the feed (or resynced).
                wait_caught_up(upstream, probe, timeout=90)
                assert_index_equals_upstream(upstream, probe)
                assert redis_cluster.primary_for_slot(redis_cluster.key_slot(KeyLayout().current)) is not killed
    finally:
        probe.close()
