"""The simulator over real HTTP: the feed, snapshots, the trust list, admin, issuing, faults."""

from __future__ import annotations

import base64
import os

import msgspec
import pytest

import fastpath
from verifier.index.records import ChangeEvent, PermitRecord
from verifier.lib import upstream_wire as wire
from verifier.sync.upstream_client import (
    CursorTooOld,
    UpstreamClient,
    UpstreamError,
    UpstreamProtocolError,
)


MSGPACK = {"Accept": "application/msgpack"}


def _pages(client, after: int, limit: int) -> list[wire.FeedPage]:
    pages = []
    while True:
        response = client.get("/feed", params={"after": after, "limit": limit}, headers=MSGPACK)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(wire.FEED_MEDIA_TYPE)
        page = wire.feed_page_decoder.decode(response.content)
        pages.append(page)
        if page.page_end == page.last_seq:
            return pages
        after = page.page_end


def test_feed_pages_are_dense_ordered_and_complete(sim) -> None:
    upstream, _, client = sim
    first, last = upstream.random_events(2500)
    assert (first, last) == (1, 2500)
    pages = _pages(client, 0, 1000)
    assert [len(p.events) for p in pages] == [1000, 1000, 500]
    seqs = [e.seq for p in pages for e in p.events]
    assert seqs == list(range(1, 2501))
    assert all(p.last_seq == 2500 and p.feed_id == upstream.feed_id for p in pages)
    assert pages[0].after == 0 and pages[0].page_end == 1000 and pages[1].after == 1000
    # Each event carries the whole permit after the change, with its version bumped.
    kinds = {e.type for p in pages for e in p.events}
    assert kinds == {"issue", "extend", "change", "cancel", "card_issued", "card_lost", "card_replaced"}
    by_pn: dict[str, list[ChangeEvent]] = {}
    for event in (e for p in pages for e in p.events):
        by_pn.setdefault(event.permit.pn, []).append(event)
    for pn, events in by_pn.items():
        versions = [e.permit.v for e in events]
        assert versions == sorted(set(versions)), pn
        assert events[-1].permit == upstream.permit(pn)
    # An empty page at the head.
    head = wire.feed_page_decoder.decode(client.get("/feed", params={"after": 2500}, headers=MSGPACK).content)
    assert head.events == [] and head.page_end == 2500 == head.last_seq


def test_feed_in_json_is_the_same_page(sim) -> None:
    upstream, _, client = sim
    upstream.random_events(30)
    as_json = client.get("/feed", params={"after": 5, "limit": 10})
    assert as_json.headers["content-type"].startswith("application/json")
    as_msgpack = client.get("/feed", params={"after": 5, "limit": 10}, headers=MSGPACK)
    a = wire.feed_page_json_decoder.decode(as_json.content)
    b = wire.feed_page_decoder.decode(as_msgpack.content)
    assert a.events == b.events and [e.seq for e in a.events] == list(range(6, 16))


def test_a_cursor_outside_the_window_is_gone(sim) -> None:
    upstream, _, client = sim
    upstream.random_events(50)
    client.post("/admin/faults", json={"retain": 10}).raise_for_status()
    assert upstream.first_seq == 41
    gone = client.get("/feed", params={"after": 39})
    assert gone.status_code == 410
    problem = gone.json()
    assert problem["type"] == "/problems/cursor-too-old" and problem["first_seq"] == 41
    assert problem["feed_id"] == upstream.feed_id
    assert client.get("/feed", params={"after": 40}).status_code == 200  # 41.. still held
    assert client.get("/feed", params={"after": 51}).status_code == 410  # past the head


@pytest.mark.parametrize("query", [{"after": -1}, {"after": "x"}, {"after": 0, "limit": 0},
                                   {"after": 0, "limit": wire.MAX_FEED_LIMIT + 1}, {}])
def test_bad_feed_requests_are_problems(sim, query) -> None:
    _, _, client = sim
    response = client.get("/feed", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


def test_admin_events_reach_the_feed_and_the_permit(sim) -> None:
    upstream, _, client = sim
    record = next(r for r in upstream.records() if r.status == "active" and r.cn)
    cancel = client.post("/admin/events", json={"type": "cancel", "pn": record.pn})
    assert cancel.status_code == 201
    event = msgspec.json.decode(cancel.content, type=ChangeEvent)
    assert event.seq == 1 and event.permit.status == "cancelled" and event.permit.v == record.v + 1
    assert msgspec.json.decode(client.get(f"/permits/{record.pn}").content, type=PermitRecord) == event.permit
    again = client.post("/admin/events", json={"type": "cancel", "pn": record.pn})
    assert again.status_code == 409 and again.json()["status"] == 409
    lost = client.post("/admin/events", json={"type": "card_lost", "pn": record.pn}).json()
    assert lost["seq"] == 2  # a cancelled permit's card can still be reported lost
    assert client.post("/admin/events", json={"type": "cancel", "pn": "WP0000002020999999"}).status_code == 404
    assert client.post("/admin/events", json={"type": "cancel"}).status_code == 400
    assert client.post("/admin/events", json={"type": "explode", "pn": record.pn}).status_code == 400
    issued = client.post("/admin/events", json={"type": "issue"}).json()
    assert issued["type"] == "issue" and client.get(f"/permits/{issued['permit'][0]}").status_code == 200
    other = next(r for r in upstream.records() if r.status == "active" and r.cn)
    replaced = msgspec.json.decode(
        client.post("/admin/events", json={"type": "card_replaced", "pn": other.pn}).content, type=ChangeEvent
    )
    assert replaced.permit.card_status(other.cn) == "replaced" and replaced.permit.cn not in (None, other.cn)
    assert upstream.permit_of_card(replaced.permit.cn).pn == other.pn
    changed = client.post("/admin/events", json={"type": "change", "pn": other.pn}).json()
    assert changed["permit"][5] != other.emp


def test_held_permits_get_no_random_events_but_explicit_ones(sim) -> None:
    upstream, _, client = sim
    records = list(upstream.records())
    held = [r.pn for r in records[:1000]]  # half the population: random events would hit some
    assert client.post("/admin/hold", json={"pns": held}).json() == {"held": 1000}
    before = {pn: upstream.permit(pn).v for pn in held}
    upstream.random_events(3000)
    assert {pn: upstream.permit(pn).v for pn in held} == before
    others = [r for r in records[1000:] if upstream.permit(r.pn).v != r.v]
    assert others, "random events went somewhere"
    cancel = client.post("/admin/events", json={"type": "cancel", "pn": held[0]})
    assert cancel.status_code in (201, 409)  # explicit events still apply (409: it was already cancelled)
    assert client.post("/admin/hold", json={"pns": ["WP0000002020999999"]}).status_code == 404
    assert client.post("/admin/hold", json={"pns": []}).status_code == 400


def test_snapshot_is_consistent_with_its_sequence_number(sim) -> None:
    """Snapshot at S, plus the feed's events after S, is the upstream's state now."""
    upstream, server, client = sim
    upstream.random_events(300)
    with UpstreamClient(server.url) as upstream_client:
        response, stream = upstream_client.open_snapshot()
        try:
            header = stream.header
            upstream.random_events(200)  # events after the snapshot started: not in it
            records = [r for batch in stream.batches() for r in batch]
        finally:
            response.close()
    assert header.seq == 300 and header.feed_id == upstream.feed_id and header.count == len(records)
    state = {r.pn: r for r in records}
    assert len(state) == len(records)
    for page in _pages(client, header.seq, 1000):
        for event in page.events:
            state[event.permit.pn] = event.permit
    assert state == {r.pn: r for r in upstream.records()}


def test_snapshot_as_ndjson(sim) -> None:
    upstream, _, client = sim
    lines = client.get("/snapshot", params={"format": "ndjson"}).content.splitlines()
    header = msgspec.json.decode(lines[0])["header"]
    trailer = msgspec.json.decode(lines[-1])["trailer"]
    records = [msgspec.json.decode(line, type=PermitRecord) for line in lines[1:-1]]
    assert header["count"] == trailer["count"] == len(records) == upstream.count
    assert records == list(upstream.records())


def test_trust_list_rotation_and_revocation(sim) -> None:
    upstream, _, client = sim
    first = client.get("/trust-list").json()
    assert first["version"] == 1 and [k["status"] for k in first["keys"]] == ["active"]
    old_kid = first["keys"][0]["kid"]
    pn = next(r.pn for r in upstream.records() if r.status == "active" and r.vt > "2027")
    old_code = client.post("/issue/wp1", json={"pn": pn}).json()["qr"]

    rotated = client.post("/admin/keys/rotate").json()
    assert rotated["version"] == 2
    assert {k["kid"]: k["status"] for k in rotated["keys"]}[old_kid] == "retired"
    assert sum(k["status"] == "active" for k in rotated["keys"]) == 1
    trust = fastpath.TrustList.from_jwks(client.get("/trust-list").content)
    new_code = client.post("/issue/wp1", json={"pn": pn}).json()["qr"]
    assert fastpath.verify_qr(old_code, trust).result == "VALID"  # retired: still verifies
    assert fastpath.verify_qr(new_code, trust).result == "VALID"

    revoked = client.post(f"/admin/keys/{old_kid}/revoke").json()
    assert revoked["version"] == 3
    trust = fastpath.TrustList.from_jwks(client.get("/trust-list").content)
    assert fastpath.verify_qr(old_code, trust).result == "KEY_REVOKED"
    assert fastpath.verify_qr(new_code, trust).result == "VALID"
    assert client.post("/admin/keys/AAAAAAAAAAA/revoke").status_code == 404


def test_issued_codes_and_cards_verify(sim) -> None:
    upstream, _, client = sim
    trust = fastpath.TrustList.from_jwks(client.get("/trust-list").content)
    record = next(r for r in upstream.records() if r.status == "active" and r.cn and r.vt > "2027")
    wp1 = client.post("/issue/wp1", json={"pn": record.pn}).json()
    verdict = fastpath.verify_qr(wp1["qr"], trust)
    assert verdict.result == "VALID" and verdict.permit["pn"] == record.pn and verdict.permit["v"] == record.v
    es1 = client.post("/issue/es1", json={"pn": record.pn}).json()
    verdict = fastpath.verify_qr(es1["qr"], trust)
    assert verdict.result == "VALID" and verdict.profile == "ES1" and verdict.permit["cn"] == record.cn

    card = client.post("/issue/card", json={"pn": record.pn}).json()
    assert card["cn"] == record.cn
    certificate = base64.b64decode(card["certificate"])
    challenge = os.urandom(32)
    signed = client.post(f"/cards/{card['cn']}/sign", json={"challenge": base64.b64encode(challenge).decode()})
    signature = base64.b64decode(signed.json()["signature"])
    assert fastpath.verify_card(certificate, challenge, signature, trust).result == "VALID"
    assert fastpath.verify_card(certificate, os.urandom(32), signature, trust).result == "BAD_SIGNATURE"

    assert client.post("/issue/wp1", json={"pn": "WP1100002020999999"}).status_code == 404
    no_card = next(r for r in upstream.records() if r.status == "active" and not r.cn)
    assert client.post("/issue/es1", json={"pn": no_card.pn}).status_code == 409
    assert client.post("/issue/card", json={"pn": no_card.pn}).status_code == 409
    assert client.post(f"/cards/{record.cn}/sign", json={"challenge": "!!"}).status_code == 400
    short = base64.b64encode(b"x" * 31).decode()
    assert client.post(f"/cards/{record.cn}/sign", json={"challenge": short}).status_code == 400
    assert client.post("/cards/S99999999999999/sign", json={"challenge": short}).status_code == 404


def test_fault_switches(sim) -> None:
    upstream, server, client = sim
    upstream.random_events(20)
    client.post("/admin/faults", json={"error_rate": 1.0}).raise_for_status()
    assert client.get("/feed", params={"after": 0}).status_code == 503
    assert client.get("/snapshot").status_code == 503
    assert client.get("/trust-list").status_code == 503
    with UpstreamClient(server.url, retries=1) as strict:
        with pytest.raises(UpstreamError):
            strict.feed(0)
    client.post("/admin/faults", json={"error_rate": 0.0, "truncate_rate": 1.0}).raise_for_status()
    with UpstreamClient(server.url, retries=2) as strict:
        with pytest.raises(UpstreamProtocolError):
            strict.feed(0)  # half a page: malformed, never returned
        with pytest.raises(UpstreamProtocolError):
            strict.trust_list()
        with pytest.raises(UpstreamProtocolError):
            response, stream = strict.open_snapshot()
            try:
                for _ in stream.batches():
                    pass
            finally:
                response.close()
    client.post("/admin/faults", json={"truncate_rate": 0.0}).raise_for_status()
    old_feed = upstream.feed_id
    state = client.post("/admin/faults", json={"reset_feed": True, "silent_changes": 5}).json()
    assert state["feed_id"] != old_feed and state["seq"] == 0
    with UpstreamClient(server.url) as healthy:
        assert healthy.feed(0).events == []
        with pytest.raises(CursorTooOld):
            healthy.feed(20)  # the old cursor is past the new feed's head
    assert client.post("/admin/faults", json={"error_rate": 2}).status_code == 400
