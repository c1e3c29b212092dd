"""Status List entries in the simulated upstream (WIRE-FORMAT 8): every permit and every card
gets one at issuance, in the feed and the snapshot, none given twice, none moved by later
events; the codes and card certificates it mints carry them in the status claim."""

from __future__ import annotations

import base64
import collections
import time

import fastpath
import msgspec
import pytest

from verifier.index.records import ChangeEvent, PermitRecord
from verifier.upstream.population import SEEDED_CARD_SLOTS
from verifier.upstream.simulator import Upstream

from .support import AS_OF

BASE = "https://pv.example/v1/status-lists"


def card_indexes(upstream: Upstream) -> dict[str, int]:
    return {card.cn: upstream.population.card_index(card.cn) for r in upstream.records() for card in r.cards}


def check_entries(upstream: Upstream) -> None:
    records = list(upstream.records())
    sis = [r.si for r in records]
    assert None not in sis and len(set(sis)) == len(sis)
    cards = card_indexes(upstream)
    assert len(set(cards.values())) == len(cards)  # no card entry given twice
    for record in records:
        if record.cards:
            assert record.ci == cards[record.cards[-1].cn]  # ci: the newest card's
        else:
            assert record.ci is None


def test_seeded_permits_and_cards_have_their_entries() -> None:
    upstream = Upstream.create(permits=2000, seed=3, as_of=AS_OF)
    check_entries(upstream)
    assert [upstream.record_at(i).si for i in range(5)] == [0, 1, 2, 3, 4]
    top = max(card_indexes(upstream).values())
    assert top < SEEDED_CARD_SLOTS * 2000


def test_events_give_new_entries_and_move_none() -> None:
    upstream = Upstream.create(permits=800, seed=4, as_of=AS_OF)
    before = {r.pn: r.si for r in upstream.records()}
    cards_before = card_indexes(upstream)
    upstream.random_events(3000)
    kinds: collections.Counter[str] = collections.Counter()
    page = upstream.feed_events(0, 3000)
    assert page is not None
    for raw in page[5]:
        kinds[msgspec.msgpack.decode(raw, type=ChangeEvent).type] += 1
    assert kinds["issue"] and kinds["card_replaced"] and kinds["card_issued"]
    check_entries(upstream)
    after = {r.pn: r.si for r in upstream.records()}
    assert all(after[pn] == si for pn, si in before.items())  # an entry never moves
    cards_after = card_indexes(upstream)
    assert all(cards_after[cn] == i for cn, i in cards_before.items())
    new_permits = [si for pn, si in after.items() if pn not in before]
    assert new_permits and min(new_permits) >= 800  # issued after the seed: entries after theirs


def test_the_feed_and_the_snapshot_carry_them(sim) -> None:
    upstream, _, client = sim
    event = client.post("/admin/events", json={"type": "issue"}).json()
    record = msgspec.convert(event["permit"], PermitRecord)
    assert record.si == upstream.count - 1 and record.ci is None
    lines = client.get("/snapshot", params={"format": "ndjson"}).content.splitlines()
    snapshot = [msgspec.json.decode(line, type=PermitRecord) for line in lines[1:-1]]
    assert [r.si for r in snapshot] == list(range(upstream.count))


@pytest.mark.parametrize("profile", ["wp1", "es1"])
def test_codes_carry_the_permits_entry(profile: str) -> None:
    upstream = Upstream.create(permits=300, seed=8, as_of=AS_OF, status_list_base=BASE)
    record = next(r for r in upstream.records() if r.status == "active" and r.cn and r.vt > "2027")
    text, _ = getattr(upstream, f"mint_{profile}")(record.pn, iat=int(time.time()) - 30)
    trust = fastpath.TrustList.from_jwks(msgspec.json.encode(upstream.trust_list()))
    verdict = fastpath.verify_qr(text, trust)
    assert verdict.ok and verdict.status_ref == (f"{BASE}/permits", record.si)


def test_card_certificates_carry_their_cards_entry(sim) -> None:
    upstream, _, client = sim
    trust = fastpath.TrustList.from_jwks(client.get("/trust-list").content)
    record = next(r for r in upstream.records() if r.status == "active" and len(r.cards) >= 2 and r.cn)
    for card in record.cards:  # the active card, and an older one (its own entry)
        answer = client.post("/issue/card", json={"pn": record.pn, "cn": card.cn}).json()
        verdict = fastpath.verify_card_certificate(base64.b64decode(answer["certificate"]), trust)
        assert verdict.ok
        assert verdict.status_ref == (f"{upstream.desk.status_list_base}/cards",
                                      upstream.population.card_index(card.cn))
    assert client.get("/admin/state").json()["status_list_base"] == upstream.desk.status_list_base


def test_a_card_number_not_ours_has_no_entry() -> None:
    upstream = Upstream.create(permits=10, seed=1, as_of=AS_OF)
    for bad in ("", "X123", "S12345678901234X", "S1234567890123"):
        with pytest.raises(ValueError):
            upstream.population.card_index(bad)
