"""The fast view builders against their readable reference, for every field set.

``ViewSpec.found`` (the bulk look-up's generated loop) must give exactly what
``ViewSpec.of_record`` gives, record by record: same fields, same values, same
JSON, for permits with no card, one card, lost and replaced cards, no ssn.
"""

from __future__ import annotations

import msgspec
import pytest

from tests.api.conftest import EMPLOYER_A, PERMITS
from verifier.api.auth.roles import Role
from verifier.api.permits.schemas import Found
from verifier.api.verdicts.views import view_spec
from verifier.index.records import Card, PermitRecord
from verifier.upstream.simulator import Upstream

FIELD_SETS = [(role.value, False) for role in Role] + [(Role.PARTNER.value, True)]


def _records() -> list[PermitRecord]:
    twin = Upstream.create(permits=1500, seed=3)
    records = [twin.record_at(i) for i in range(twin.count)]
    # the rare shapes, whatever the simulator drew: a repeated card number, no cards at all
    odd = PERMITS["valid"]
    records.append(msgspec.structs.replace(odd, pn="WP-ODD-1", cards=(Card("C1", "replaced"), Card("C1", "active"))))
    records.append(msgspec.structs.replace(odd, pn="WP-ODD-2", cards=(), ssn=None))
    return records


RECORDS = _records()


def test_the_records_cover_every_card_shape() -> None:
    shapes = {tuple(card.status for card in record.cards) for record in RECORDS}
    assert {(), ("active",), ("lost",), ("lost", "active"), ("replaced", "active")} <= shapes
    assert any(record.ssn is None for record in RECORDS)


@pytest.mark.parametrize(("role", "full_fields"), FIELD_SETS)
def test_found_equals_of_record(role: str, full_fields: bool) -> None:
    spec = view_spec(role, full_fields)
    by_pn = {record.pn: record for record in RECORDS}
    ids = [*by_pn, "WP-NOT-THERE", RECORDS[0].pn]  # an unknown id and a repeated one
    found, missing, shown = spec.found(ids, by_pn.get, None, Found)
    expected = [Found(pn, spec.of_record(by_pn[pn])) for pn in ids if pn in by_pn]
    assert found == expected
    assert msgspec.json.encode(found) == msgspec.json.encode(expected)
    assert missing == ["WP-NOT-THERE"]
    assert shown == [f.permit.pn for f in expected]


def test_found_keeps_to_the_employers_given() -> None:
    spec = view_spec(Role.PARTNER.value)
    by_pn = {record.pn: record for record in RECORDS}
    employers = frozenset({RECORDS[0].emp, EMPLOYER_A})
    found, missing, shown = spec.found(list(by_pn), by_pn.get, employers, Found)
    assert [f.id for f in found] == [pn for pn, r in by_pn.items() if r.emp in employers]
    assert missing == [pn for pn, r in by_pn.items() if r.emp not in employers]
    assert shown == [f.id for f in found]
    assert found and missing
