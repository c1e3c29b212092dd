"""The status-list writer against the real simulator, sync job and Redis: the lists are the
index's, a change is published, they are re-signed before they expire, and they come out
the same after a resync, a restart of the writer and a FLUSHALL."""

from __future__ import annotations

import time
from typing import Any

import fastpath
from verifier.index.status_lists import CARDS, PERMITS, load_published_sync
from verifier.status_lists import keys as signing_keys
from verifier.status_lists.entries import ListEntries, card_entry, permit_entry
from verifier.status_lists.keys import SIGNING_KEYS_KEY

from tests.sync.support import sync_thread, wait_caught_up, wait_for

from tests.upstream.support import simulator

from .conftest import BASE, Stack, list_settings, published, writer_thread
from .decoder import read_token


def expected_lists(stack: Stack) -> ListEntries:
    return ListEntries.build(stack.upstream.records())


def test_the_lists_are_the_upstreams_permits_and_cards(stack: Stack) -> None:
    upstream = stack.upstream
    expected = expected_lists(stack)
    permits, cards = stack.lists_show(lambda p, c: True, "both lists published")
    assert permits.claims[2] == f"{BASE}/permits" and cards.claims[2] == f"{BASE}/cards"
    assert permits.bits == 2 and cards.bits == 1
    records = list(upstream.records())
    assert permits.entries(len(expected.permits)) == list(expected.permits.values)
    assert cards.entries(len(expected.cards)) == list(expected.cards.values)
    # and by the rule, record by record
    assert all(permits.entry(r.si) == permit_entry(r) for r in records)
    assert all(cards.entry(r.ci) == card_entry(r) for r in records if r.ci is not None)
    assert any(r.status == "cancelled" for r in records) and any(permits.entry(r.si) == 0 for r in records)
    # signed by a key the API's trust list will carry with use "status"; fastpath verifies it
    jwks = stack.redis.get(stack.writer.keys.jwks)
    trust = fastpath.TrustList.from_jwks(jwks)
    assert set(trust.status_keys) and not trust.issuer_keys
    for name in (PERMITS, CARDS):
        held = load_published_sync(stack.redis, name)
        assert held is not None
        verified = fastpath.verify_status_list(held.token, trust)
        assert verified.ttl == 1 and verified.exp - verified.iat == 30
        assert held.etag.startswith('"')


def test_a_cancellation_is_published(stack: Stack) -> None:
    record = next(r for r in stack.upstream.records() if r.status == "active" and r.ci is not None
                  and r.cards[-1].status == "active")
    stack.lists_show(lambda p, c: p.entry(record.si) == 0 and c.entry(record.ci) == 0, "the permit valid")
    stack.client.post("/admin/events", json={"type": "cancel", "pn": record.pn}).raise_for_status()
    stack.lists_show(lambda p, c: p.entry(record.si) == 1 and c.entry(record.ci) == 1,
                     "the cancellation in both lists")


def test_a_replaced_card_is_published_and_its_successor_valid(stack: Stack) -> None:
    record = next(r for r in stack.upstream.records() if r.status == "active" and r.ci is not None
                  and r.cards[-1].status == "active")
    event = stack.client.post("/admin/events", json={"type": "card_replaced", "pn": record.pn}).json()
    new_ci = event["permit"][13]
    assert new_ci != record.ci
    stack.lists_show(lambda p, c: len(c.array) * 8 > new_ci and c.entry(record.ci) == 1 and c.entry(new_ci) == 0,
                     "the old card not valid, the new one valid")


def test_lists_are_re_signed_before_they_expire(stack: Stack) -> None:
    # ttl 1 s: a list is re-signed unchanged about every 0.9 s, each before the last one's exp
    first = wait_for(lambda: load_published_sync(stack.redis, PERMITS), 30, "the first list")
    seen = [first]

    def newer() -> bool:
        held = load_published_sync(stack.redis, PERMITS)
        if held is not None and held.iat > seen[-1].iat:
            seen.append(held)
        return len(seen) >= 3

    wait_for(newer, 30, "two re-signings")
    for before, after in zip(seen, seen[1:]):
        assert after.iat < before.exp  # never a gap with no current list
        assert after.etag != before.etag
        assert read_bits(after.token) == read_bits(before.token)  # nothing changed but the signature


def read_bits(token: bytes) -> bytes:
    return read_token(token).array


def test_the_lists_survive_a_flushall_a_resync_and_a_restart_unchanged(stack: Stack, redis_url: str) -> None:
    stack.client.post("/admin/events/random", json={"count": 300}).raise_for_status()
    wait_caught_up(stack.upstream, stack.redis)
    expected = expected_lists(stack)
    before, _ = stack.lists_show(
        lambda p, c: p.array == expected.permits.packed() and c.array == expected.cards.packed(),
        "the lists after the events")
    cards_before = published(stack.redis, CARDS)
    assert cards_before is not None
    builds = stack.writer.counts.builds
    # FLUSHALL: the index, the published lists, the signing keys (store = index here) are gone
    stack.redis.flushall()
    wait_caught_up(stack.upstream, stack.redis, timeout=60)  # the sync job resyncs from the snapshot
    after, cards_after = stack.lists_show(lambda p, c: True, "the lists back", timeout=60)
    wait_for(lambda: stack.writer.counts.builds > builds, 30, "a build from the reloaded index")
    after, cards_after = stack.lists_show(
        lambda p, c: p.claims[6] > before.claims[6], "lists signed after the reload")
    assert after.array == before.array and cards_after.array == cards_before.array
    # the writer put its signing keys back: the same key signs
    assert after.protected[4] == before.protected[4]
    wait_for(lambda: stack.redis.exists(SIGNING_KEYS_KEY), 30, "the signing keys back in the store")
    # a resync from a reset feed: a new generation, the same lists
    builds = stack.writer.counts.builds
    stack.client.post("/admin/faults", json={"reset_feed": True}).raise_for_status()
    wait_caught_up(stack.upstream, stack.redis, timeout=60)
    wait_for(lambda: stack.writer.counts.builds > builds, 30, "a build after the switch")
    again, cards_again = stack.lists_show(lambda p, c: p.claims[6] >= after.claims[6], "lists after the resync")
    assert again.array == before.array and cards_again.array == cards_before.array
    # another writer (a restart): the same lists from the same index
    stack.writer.stop.set()
    with writer_thread(stack.settings) as restarted:
        wait_for(lambda: restarted.counts.published >= 2, 30, "the restarted writer to publish")
        restarted_permits, restarted_cards = stack.lists_show(
            lambda p, c: p.claims[6] >= again.claims[6], "the restarted writer's lists")
        assert restarted_permits.array == before.array and restarted_cards.array == cards_before.array
        assert restarted.counts.rebuild_mismatches == 0
    assert stack.writer.counts.rebuild_mismatches == 0


def test_a_list_redis_lost_is_put_back(stack: Stack) -> None:
    held = wait_for(lambda: load_published_sync(stack.redis, CARDS), 30, "the cards list")
    restored = stack.writer.counts.restored
    stack.redis.delete(stack.writer.keys.list(CARDS), stack.writer.keys.jwks)
    wait_for(lambda: load_published_sync(stack.redis, CARDS), 30, "the cards list back")
    assert stack.writer.counts.restored > restored or load_published_sync(stack.redis, CARDS).iat >= held.iat
    wait_for(lambda: stack.redis.exists(stack.writer.keys.jwks), 30, "the signers' public keys back")


def test_nothing_is_signed_while_the_index_is_stale(redis_url: str, redis_sync: Any) -> None:
    # the sync job stops: the index is no longer confirmed, so the lists are not re-signed
    # (they run out at their exp: status is never guessed)
    with simulator(permits=200, seed=5, status_list_base=BASE) as (upstream, server, _client):
        settings = list_settings(redis_url, server.url, staleness_bound_s=1.0)
        with sync_thread(settings):
            wait_caught_up(upstream, redis_sync)
        time.sleep(1.5)  # past the staleness bound with no heartbeat
        with writer_thread(settings) as writer:
            wait_for(lambda: writer.counts.builds >= 1, 30, "a build")
            time.sleep(1.5)  # rounds of the writer's loop, each finding the index stale
            assert writer.counts.published == 0
            assert load_published_sync(redis_sync, PERMITS) is None


def test_a_rotated_key_signs_and_both_are_published(stack: Stack) -> None:
    first = wait_for(lambda: published(stack.redis, PERMITS), 30, "a list")
    ring, new = signing_keys.rotate(stack.redis)
    assert new.status == "active" and len(ring) == 2
    permits, cards = stack.lists_show(lambda p, c: p.protected[4] == new.kid and c.protected[4] == new.kid,
                                      "lists signed with the new key")
    trust = fastpath.TrustList.from_jwks(stack.redis.get(stack.writer.keys.jwks))
    assert {first.protected[4], new.kid} <= set(trust.status_keys)
    assert trust.keys[first.protected[4]].status == "retired"
    # a revoked key: refused by verifiers; the writer keeps signing with the active one
    signing_keys.revoke(stack.redis, ring.keys[0].kid_text)
    wait_for(lambda: fastpath.TrustList.from_jwks(stack.redis.get(stack.writer.keys.jwks))
             .keys[first.protected[4]].status == "revoked", 30, "the revocation published")
    assert permits.array == first.array and cards.entries() is not None


def test_with_no_active_key_nothing_is_signed_until_a_rotation(stack: Stack) -> None:
    held = wait_for(lambda: published(stack.redis, PERMITS), 30, "a list")
    ring = signing_keys.decode_ring(stack.redis.get(SIGNING_KEYS_KEY))
    signing_keys.revoke(stack.redis, ring.active.kid_text)
    wait_for(lambda: "no active" in (stack.writer.counts.last_error or ""), 30, "the writer to notice")
    signed = stack.writer.counts.published
    time.sleep(1.5)  # ttl 1 s: it would have re-signed by now
    assert stack.writer.counts.published == signed
    _, new = signing_keys.rotate(stack.redis)
    stack.lists_show(lambda p, c: p.protected[4] == new.kid and c.protected[4] == new.kid, "signed again")
    assert held.protected[4] != new.kid
