"""The seeded permits: deterministic for a seed, varied like the real registry, unique ids."""

from __future__ import annotations

import collections
import datetime as dt
import re

import pytest

from verifier.upstream.population import Population, credit_code_check_char, is_valid_credit_code
from verifier.upstream.simulator import Upstream

from .support import AS_OF

SAMPLE = 3000


@pytest.fixture(scope="module")
def records() -> list:
    population = Population(seed=5, count=SAMPLE, as_of=AS_OF)
    return [population.record(i) for i in range(SAMPLE)]


def test_same_seed_same_permits_other_seed_other_permits() -> None:
    a = Population(seed=5, count=100, as_of=AS_OF)
    b = Population(seed=5, count=100, as_of=AS_OF)
    c = Population(seed=6, count=100, as_of=AS_OF)
    assert [a.record(i) for i in range(100)] == [b.record(i) for i in range(100)]
    assert sum(a.record(i) == c.record(i) for i in range(100)) == 0


def test_upstreams_with_one_seed_make_the_same_events() -> None:
    one = Upstream.create(permits=500, seed=9, as_of=AS_OF)
    two = Upstream.create(permits=500, seed=9, as_of=AS_OF)
    one.random_events(300)
    two.random_events(300)
    assert list(one.records()) == list(two.records())


def test_identifiers_are_unique_and_well_formed(records: list) -> None:
    pns = [r.pn for r in records]
    assert len(set(pns)) == len(pns)
    assert all(re.fullmatch(r"WP\d{6}20\d{2}\d{6}", pn) for pn in pns)
    ssns = [r.ssn for r in records if r.ssn]
    assert len(set(ssns)) == len(ssns)
    assert all(re.fullmatch(r"9\d{18}", s) for s in ssns)
    cns = [c.cn for r in records for c in r.cards]
    assert len(set(cns)) == len(cns)
    assert all(re.fullmatch(r"S\d{14}", cn) for cn in cns)


def test_permit_and_card_numbers_map_back_to_their_index() -> None:
    population = Population(seed=5, count=SAMPLE, as_of=AS_OF)
    for i in (0, 1, 17, SAMPLE - 1):
        record = population.record(i)
        assert population.index_of_pn(record.pn) == i
        for card in record.cards:
            assert population.index_of_cn(card.cn)[0] == i  # type: ignore[index]
    assert population.index_of_pn("XX1100002020000001") is None
    assert population.index_of_cn("S1100009") is None


def test_realistic_variety(records: list) -> None:
    cats = collections.Counter(r.cat for r in records)
    assert set(cats) == {"A", "B", "C"} and cats["B"] > cats["A"] > 0
    nationalities = collections.Counter(r.nat for r in records)
    assert len(nationalities) >= 40
    assert all(re.fullmatch(r"[A-Z]{3}", nat) for nat in nationalities)
    assert nationalities.most_common(1)[0][1] < 0.2 * SAMPLE  # no single nationality dominates
    regions = {r.pn[2:8] for r in records}
    assert len(regions) >= 10
    employers = collections.Counter(r.emp for r in records)
    assert len(employers) > 100 and employers.most_common(1)[0][1] > 5  # a few big employers, a long tail
    assert all(is_valid_credit_code(emp) for emp in employers)
    assert all(re.fullmatch(r"[A-Z]+(?: [A-Z]+)*, [A-Z]+(?: [A-Z]+)*", r.n) for r in records)

    cancelled = sum(r.status == "cancelled" for r in records) / SAMPLE
    assert 0.01 < cancelled < 0.1
    with_ssn = sum(r.ssn is not None for r in records) / SAMPLE
    assert 0.75 < with_ssn < 0.97
    statuses = collections.Counter(c.status for r in records for c in r.cards)
    assert statuses["active"] > statuses["lost"] > 0 and statuses["replaced"] > 0
    assert all(sum(c.status == "active" for c in r.cards) <= 1 for r in records)
    assert any(r.ssn and not r.cards for r in records)  # an ssn, no card yet

    as_of = AS_OF.isoformat()
    expired = sum(r.vt < as_of for r in records) / SAMPLE
    assert 0.02 < expired < 0.15  # a share ran out; most are in force
    for r in records[:200]:
        vf, vt, dob = (dt.date.fromisoformat(x) for x in (r.vf, r.vt, r.dob))
        assert vf < vt and 365 <= (vt - vf).days + 1 <= 5 * 365
        assert 22 <= (AS_OF - dob).days // 365 <= 63
        assert r.v >= 1 + len(r.cards) + (r.status == "cancelled")  # every change bumped v


def test_credit_code_check_character_follows_gb32100() -> None:
    # A published example of a unified social credit code (GB 32100-2015 annex).
    assert credit_code_check_char("91350100M000100Y4") == "3"
    assert is_valid_credit_code("91350100M000100Y43")
    assert not is_valid_credit_code("91350100M000100Y44")
    assert not is_valid_credit_code("91350100M000100Y4I")  # I is not in the alphabet


def test_a_million_permits_exist_without_being_generated() -> None:
    upstream = Upstream.create(permits=1_000_000, seed=1, as_of=AS_OF)
    last = upstream.record_at(999_999)
    assert upstream.permit(last.pn) == last
    assert upstream.snapshots.cached_chunks == 0  # nothing encoded until a snapshot asks
    assert len(upstream.feed.chunk_versions) == -(-1_000_000 // 1024)
