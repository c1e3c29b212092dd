"""GET /v1/permits/{pn}, POST /v1/permits/lookup, POST /v1/verify/manual: fields by role, partner binding."""

from __future__ import annotations

from typing import Any

import pytest

from verifier.api.auth.roles import PARTNER_FULL_FIELDS, PERMIT_FIELDS
from tests.api.conftest import EMPLOYER_A, EMPLOYER_B, PERMITS, World, open_client

STATUS_FIELDS = {"pn", "status", "cat", "emp", "vf", "vt"}


@pytest.mark.parametrize("role", ["exit_entry", "service_hall", "social_insurance", "admin"])
def test_get_permit_shows_exactly_the_roles_fields(client: Any, world: World, role: str) -> None:
    permit = PERMITS["valid"]
    response = client.get(f"/v1/permits/{permit.pn}", headers=world.headers(role))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["permit"].keys() == set(PERMIT_FIELDS[role])  # every field of the role is known for this permit
    assert body["permit"]["pn"] == permit.pn
    assert body["index_as_of"]["seq"] == world.index.seq
    assert body["lag_s"] >= 0


def test_get_permit_is_not_for_partners(client: Any, world: World) -> None:
    response = client.get(f"/v1/permits/{PERMITS['valid'].pn}", headers=world.headers("partner"))
    assert response.status_code == 403


def test_get_unknown_permit_is_404(client: Any, world: World) -> None:
    response = client.get("/v1/permits/WP0000000000000000", headers=world.headers("exit_entry"))
    assert response.status_code == 404
    assert response.json()["type"] == "/problems/not-found"


@pytest.mark.parametrize(("by", "attribute"), [("pn", "pn"), ("ssn", "ssn"), ("cn", "cn")])
def test_lookup_by_each_identifier(client: Any, world: World, by: str, attribute: str) -> None:
    wanted = [PERMITS["valid"], PERMITS["cancelled"], PERMITS["other_employer"]]
    ids = [getattr(p, attribute) for p in wanted] + ["NOPE-1", "NOPE-2"]
    response = client.post("/v1/permits/lookup", json={"by": by, "ids": ids}, headers=world.headers("social_insurance"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [f["id"] for f in body["found"]] == ids[:3]
    assert [f["permit"]["pn"] for f in body["found"]] == [p.pn for p in wanted]
    assert body["missing"] == ["NOPE-1", "NOPE-2"]
    assert body["found"][1]["permit"]["status"] == "cancelled"


def test_lookup_by_a_lost_card_finds_its_permit_with_the_cards_status(client: Any, world: World) -> None:
    response = client.post("/v1/permits/lookup", json={"by": "cn", "ids": ["CWP1100002020000005"]},
                           headers=world.headers("admin"))
    (found,) = response.json()["found"]
    assert found["permit"]["pn"] == PERMITS["card_lost"].pn
    assert (found["permit"]["cn"], found["permit"]["card_status"]) == ("CWP1100002020000005", "lost")


def test_partner_sees_only_its_employers_permits_and_only_status_fields(client: Any, world: World) -> None:
    ids = [PERMITS["valid"].pn, PERMITS["other_employer"].pn, PERMITS["cancelled"].pn]
    response = client.post("/v1/permits/lookup", json={"by": "pn", "ids": ids}, headers=world.headers("partner"))
    assert response.status_code == 200
    body = response.json()
    # the other employer's permit is "missing", exactly like an unknown one
    assert [f["id"] for f in body["found"]] == [ids[0], ids[2]]
    assert body["missing"] == [ids[1]]
    for found in body["found"]:
        assert found["permit"].keys() == STATUS_FIELDS
        assert found["permit"]["emp"] == EMPLOYER_A


def test_partner_cannot_reach_other_employers_through_ssn_or_cn(client: Any, world: World) -> None:
    other = PERMITS["other_employer"]
    for by, ident in (("ssn", other.ssn), ("cn", other.cn)):
        response = client.post("/v1/permits/lookup", json={"by": by, "ids": [ident]}, headers=world.headers("partner"))
        assert response.json()["found"] == []
        assert response.json()["missing"] == [ident]


def test_partner_key_with_full_fields(world: World) -> None:
    _key_id, token = world.add_key("partner", "HR platform B", (EMPLOYER_B,), full_fields=True)
    client = open_client(world.settings())
    try:
        response = client.post("/v1/permits/lookup", headers={"X-API-Key": token},
                               json={"by": "pn", "ids": [PERMITS["other_employer"].pn, PERMITS["valid"].pn]})
    finally:
        client.__exit__(None, None, None)
    body = response.json()
    assert [f["id"] for f in body["found"]] == [PERMITS["other_employer"].pn]
    assert body["found"][0]["permit"].keys() == set(PARTNER_FULL_FIELDS)
    assert body["found"][0]["permit"]["n"] == "DUPONT MARIE"


@pytest.mark.parametrize("role", ["exit_entry", "service_hall"])
def test_lookup_is_not_for_front_desks(client: Any, world: World, role: str) -> None:
    response = client.post("/v1/permits/lookup", json={"by": "pn", "ids": ["X"]}, headers=world.headers(role))
    assert response.status_code == 403


def test_lookup_takes_10000_ids_and_not_10001(client: Any, world: World) -> None:
    ids = [f"WP9{i:015d}" for i in range(10_000)]
    ids[1234] = PERMITS["valid"].pn
    response = client.post("/v1/permits/lookup", json={"by": "pn", "ids": ids}, headers=world.headers("admin"))
    assert response.status_code == 200
    body = response.json()
    assert [f["id"] for f in body["found"]] == [PERMITS["valid"].pn]
    assert len(body["missing"]) == 9_999
    response = client.post("/v1/permits/lookup", json={"by": "pn", "ids": ids + ["one more"]},
                           headers=world.headers("admin"))
    assert response.status_code == 400
    assert response.json()["errors"][0]["key"] == "ids"


# --- manual verification -------------------------------------------------------

def manual(client: Any, world: World, pn: str, dob: str, role: str = "exit_entry") -> dict[str, Any]:
    response = client.post("/v1/verify/manual", json={"pn": pn, "dob": dob, "terminal": "DESK-1"},
                           headers=world.headers(role))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("pn_key", "result", "reasons"),
    [
        ("valid", "VALID", []),
        ("cancelled", "PERMIT_CANCELLED", ["status.cancelled"]),
        ("expired", "PERMIT_EXPIRED", ["status.permit_expired"]),
    ],
)
def test_manual_verification(client: Any, world: World, pn_key: str, result: str, reasons: list[str]) -> None:
    permit = PERMITS[pn_key]
    verdict = manual(client, world, permit.pn, permit.dob)
    assert (verdict["result"], verdict["reasons"], verdict["profile"]) == (result, reasons, "MANUAL")
    assert verdict["permit"]["pn"] == permit.pn
    assert verdict["index_as_of"]["seq"] == world.index.seq


def test_manual_with_a_wrong_date_of_birth_says_no_more_than_an_unknown_number(client: Any, world: World) -> None:
    wrong_dob = manual(client, world, PERMITS["valid"].pn, "1999-01-01")
    unknown = manual(client, world, "WP0000000000000000", "1999-01-01")
    for verdict in (wrong_dob, unknown):
        assert (verdict["result"], verdict["reasons"], verdict["permit"]) == (
            "PERMIT_NOT_FOUND", ["manual.no_match"], None)


def test_manual_date_must_look_like_a_date(client: Any, world: World) -> None:
    response = client.post("/v1/verify/manual", json={"pn": "X", "dob": "12/04/1985", "terminal": "D"},
                           headers=world.headers("exit_entry"))
    assert response.status_code == 400
    assert response.json()["errors"][0]["key"] == "dob"
