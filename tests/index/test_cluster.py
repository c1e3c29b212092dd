"""The same writer and readers on a local Redis Cluster (3 primaries, 3 replicas)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from verifier.index import (
    CHANGES_CHANNEL,
    IndexUnavailable,
    IndexWriter,
    PermitIndex,
    SyncPermitIndex,
    decode_change,
)
from verifier.index.keys import KeyLayout
from verifier.lib.redis_client import async_client, sync_client
from tests.support.local_cluster import LocalCluster

from .conftest import Leader, event, make_record, pn_of, run

pytestmark = pytest.mark.integration


def _leader(url: str) -> tuple[Any, Leader]:
    client = sync_client(url)
    writer = IndexWriter(client)
    fence = writer.acquire_leadership("cluster-test", ttl_s=600)
    assert fence is not None
    return client, Leader(writer, fence, "cluster-test")


def test_writer_and_readers_on_a_cluster(redis_cluster_url: str, redis_cluster: LocalCluster) -> None:
    client, leader = _leader(redis_cluster_url)
    assert type(client).__name__ == "RedisCluster"
    # Subscribe on a node that does not hold the index's slot: PUBLISH reaches every node.
    index_node = redis_cluster.primary_for_slot(LocalCluster.key_slot(KeyLayout().current))
    other = next(n for n in redis_cluster.nodes if n.running and n is not index_node)
    plain = other.client()
    pubsub = plain.pubsub()
    pubsub.subscribe(CHANGES_CHANNEL)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"

    leader.load([make_record(i) for i in range(500)], seq=1)
    leader.load([make_record(i, v=2) for i in range(500)], seq=2)  # a switch; old gen dropped
    leader.apply([event(3, make_record(1, v=3, status="cancelled"), "cancel"),
                  event(4, make_record(2, v=3, ssn="S-NEW"), "change")])
    leader.writer.heartbeat(4, None, leader.fence)
    assert leader.writer.generations() == [leader.writer.state().generation]

    reader = SyncPermitIndex(client)
    assert reader.get(pn_of(1)).status == "cancelled"
    assert reader.get_many("ssn", ["S-NEW", make_record(2).ssn or ""]).keys() == {"S-NEW"}
    assert len(reader.get_many("cn", [make_record(i).cn or "" for i in range(500)])) == 500
    assert reader.freshness().seq == 4

    async def async_read() -> Any:
        aclient = async_client(redis_cluster_url)
        try:
            index = PermitIndex(aclient)
            return (await index.get(pn_of(1)), await index.get_many("ssn", ["S-NEW"]),
                    await index.freshness())
        finally:
            await aclient.aclose()

    record, by_ssn, fresh = run(async_read())
    assert record.status == "cancelled" and by_ssn["S-NEW"].pn == pn_of(2)
    assert fresh.ready and fresh.seq == 4

    kinds = []
    deadline = time.monotonic() + 10
    while len(kinds) < 3 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            kinds.append(decode_change(message["data"]).kind)
    pubsub.close()
    plain.close()
    assert kinds == ["switch", "switch", "apply"]
    client.close()


@pytest.mark.slow
def test_primary_killed_reader_unavailable_then_recovers(
    redis_cluster_url: str, redis_cluster: LocalCluster
) -> None:
    client, leader = _leader(redis_cluster_url)
    leader.load([make_record(i) for i in range(200)], seq=1)
    for seq in range(2, 12):
        leader.apply([event(seq, make_record(seq, v=seq))])
    # Replication is asynchronous: this test is about recovery, not about the writes a
    # failover may lose, so let the replicas have everything first.
    redis_cluster.wait_replicated()

    async def scenario() -> tuple[int, int]:
        aclient = async_client(redis_cluster_url)
        index = PermitIndex(aclient)
        unavailable = answered = 0
        try:
            assert await index.get(pn_of(5)) is not None
            redis_cluster.kill_primary(KeyLayout().current)
            deadline = time.monotonic() + 60
            # Until failover completes the reader raises IndexUnavailable, never
            # anything else; then the same reader answers again by itself.
            while time.monotonic() < deadline:
                try:
                    record = await index.get(pn_of(5))
                except IndexUnavailable:
                    unavailable += 1
                    answered = 0
                    await asyncio.sleep(0.05)
                    continue
                assert record is not None and record.v == 5
                answered += 1
                if unavailable and answered >= 20:
                    break
                await asyncio.sleep(0.01)
            fresh = await index.freshness()
            assert fresh.ready and fresh.seq == 11
            # The look-up script is loaded again on the promoted replica (NOSCRIPT).
            by_ssn = await index.get_many("ssn", [make_record(7).ssn or ""])
            assert by_ssn[make_record(7).ssn or ""].v == 7
        finally:
            await aclient.aclose()
        return unavailable, answered

    unavailable, answered = run(scenario())
    assert unavailable > 0 and answered >= 20

    # The sync writer recovers too, and resumes from the replica's cursor.
    deadline = time.monotonic() + 60
    while True:
        try:
            state = leader.writer.state()
            result = leader.writer.apply_page([event(12, make_record(12, v=12))],
                                              cursor_before=state.seq, fence=leader.fence)
            break
        except IndexUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert result.cursor == 12
    assert SyncPermitIndex(client).get(pn_of(12)).v == 12
    client.close()
