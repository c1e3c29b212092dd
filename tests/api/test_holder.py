"""Holder services through the real app and a real Redis: sign-in with ES1 codes, holder
tokens, the holder's permit, "who verified me", the real-name match, and bad input.

The notice (which needs the upstream simulator) is in test_holder_notice.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.api.audit.log import AUDIT_STREAM
from verifier.api.auth.terminals import register_terminal
from verifier.api.holder import service as holder_service
from verifier.api.holder.matching import name_parts
from verifier.issuing.mint import permit_map
from verifier.run.samples import tamper_signature
from tests.api.conftest import NOT_IN_INDEX, PERMITS, World, open_client, record, run_async, wait_until

SESSION = "/v1/holder/session"
PLATFORM = "essc_platform"


def platform(world: World, token: str | None = None, **extra: str) -> dict[str, str]:
    headers = {**world.headers(PLATFORM), **extra}
    if token is not None:
        headers["X-Holder-Token"] = token
    return headers


def sign_in(client: Any, world: World, code: str) -> Any:
    return client.post(SESSION, json={"code": code}, headers=platform(world))


def token_for(client: Any, world: World, name: str = "valid") -> str:
    response = sign_in(client, world, world.es1(PERMITS[name]))
    assert response.status_code == 200, response.text
    return response.json()["token"]  # type: ignore[no-any-return]


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document = response.json()
    assert document["status"] == status
    return document  # type: ignore[no-any-return]


def audit_records(world: World) -> list[dict[str, Any]]:
    return [r for _id, fields in world.redis_sync.xrange(AUDIT_STREAM) for r in orjson.loads(fields[b"r"])]


# --- sign-in -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "version", "result"), [
    ("valid", None, "VALID"),
    ("cancelled", None, "PERMIT_CANCELLED"),
    ("expired", None, "PERMIT_EXPIRED"),
    ("superseded", 1, "SUPERSEDED"),  # the index holds v=3: the code shows outdated data
])
def test_a_fresh_es1_code_signs_the_holder_in(client: Any, world: World, name: str, version: int | None,
                                              result: str) -> None:
    permit = PERMITS[name] if version is None else record(PERMITS[name].pn, v=version)
    response = sign_in(client, world, world.es1(permit))
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["result"] == result
    assert session["token"].startswith("pvh_") and len(session["token"]) == 47
    expires = time.mktime(time.strptime(session["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert 590 <= expires - time.time() <= 610  # 10 minutes by default
    # the token reads that permit
    permit_out = client.get("/v1/holder/permit", headers=platform(world, session["token"]))
    assert permit_out.status_code == 200, permit_out.text
    assert permit_out.json()["permit"]["pn"] == permit.pn


def test_the_code_is_consumed_a_second_sign_in_is_replayed(client: Any, world: World) -> None:
    code = world.es1(PERMITS["valid"])
    assert sign_in(client, world, code).status_code == 200
    # at once, from the same platform key: a scanner's double read would be a repeat; a sign-in is not
    refused = problem(sign_in(client, world, code), 403)
    assert (refused["result"], refused["reasons"], refused["type"]) == (
        "REPLAYED", ["status.replayed"], "/problems/holder-sign-in-refused")
    assert "REPLAYED" in refused["detail"]
    # and a scanner that reads the consumed code later gets REPLAYED too
    scan = client.post("/v1/verify/qr", json={"qr": code, "terminal": "GATE-1"}, headers=world.headers("exit_entry"))
    assert scan.json()["result"] == "REPLAYED"


@pytest.mark.parametrize("name", ["cancelled", "expired"])
def test_a_code_that_stopped_at_the_permit_status_is_used_up_too(client: Any, world: World, name: str) -> None:
    code = world.es1(PERMITS[name])
    assert sign_in(client, world, code).status_code == 200
    refused = problem(sign_in(client, world, code), 403)
    assert (refused["result"], refused["reasons"]) == ("REPLAYED", ["status.replayed"])


@pytest.mark.parametrize(("make", "result"), [
    (lambda w: tamper_signature(w.es1(PERMITS["valid"])), "BAD_SIGNATURE"),
    (lambda w: w.es1(PERMITS["valid"], iat=int(time.time()) - 1000, lifetime=300), "EXPIRED"),
    (lambda w: w.es1(NOT_IN_INDEX), "PERMIT_NOT_FOUND"),
    (lambda w: w.es1({**permit_map(PERMITS["card_lost"]), "cn": "CWP1100002020000005"}), "CARD_INVALID"),
    (lambda w: w.es1(PERMITS["valid"], key=w.revoked), "KEY_REVOKED"),
    (lambda w: "ES1:NOT-BASE45!", "MALFORMED"),
])
def test_other_verdicts_give_no_token_and_say_why(client: Any, world: World, make: Any, result: str) -> None:
    refused = problem(sign_in(client, world, make(world)), 403)
    assert refused["result"] == result
    assert refused["reasons"]
    assert "token" not in refused
    # nothing about the permit is in the refusal
    assert PERMITS["valid"].n not in orjson.dumps(refused).decode()


def test_a_printed_notice_code_does_not_sign_in(client: Any, world: World) -> None:
    refused = problem(sign_in(client, world, world.wp1(PERMITS["valid"])), 403)
    assert "ES1" in refused["detail"]
    assert problem(sign_in(client, world, "hello"), 403)["type"] == "/problems/holder-sign-in-refused"


def test_sign_in_while_the_index_is_stale_is_503_naming_the_verdict(world: World) -> None:
    client = open_client(world.settings(staleness_bound_s=0.000001))
    try:
        time.sleep(0.05)
        refused = problem(sign_in(client, world, world.es1(PERMITS["valid"])), 503)
        assert refused["result"] == "STATUS_UNAVAILABLE"
        assert refused["reasons"] == ["status.index_stale"]
    finally:
        client.__exit__(None, None, None)


# --- holder tokens -----------------------------------------------------------------

def test_bad_holder_tokens_are_401_with_a_reason(client: Any, world: World) -> None:
    for token, words in [(None, "X-Holder-Token"), ("", "X-Holder-Token"), ("not-a-token", "not a holder token"),
                         ("pvh_" + "A" * 43, "unknown"), ("pvh_" + "A" * 42 + "!", "not a holder token")]:
        headers = platform(world) if token is None else platform(world, token)
        refused = problem(client.get("/v1/holder/permit", headers=headers), 401)
        assert refused["type"] == "/problems/holder-token"
        assert refused["title"] == "Missing or invalid holder token"
        assert words in refused["detail"], (token, refused)


def test_a_token_works_only_with_the_platform_key_that_made_it(client: Any, world: World) -> None:
    token = token_for(client, world)
    _key_id, other_platform = world.add_key(PLATFORM, "another e-card platform")
    refused = problem(client.get("/v1/holder/permit", headers={"Authorization": f"Bearer {other_platform}",
                                                               "X-Holder-Token": token}), 401)
    assert "unknown" in refused["detail"]
    assert PERMITS["valid"].pn not in orjson.dumps(refused).decode()
    assert client.get("/v1/holder/permit", headers=platform(world, token)).status_code == 200


def test_sign_out_ends_the_token_at_once(client: Any, world: World) -> None:
    token = token_for(client, world)
    assert client.delete(SESSION, headers=platform(world, token)).status_code == 204
    assert "unknown" in problem(client.get("/v1/holder/permit", headers=platform(world, token)), 401)["detail"]
    assert problem(client.delete(SESSION, headers=platform(world, token)), 401)["type"] == "/problems/holder-token"


def test_an_expired_token_is_answered_expired(world: World) -> None:
    client = open_client(world.settings(holder_session_ttl_s=0.3))
    try:
        token = token_for(client, world)
        assert client.get("/v1/holder/permit", headers=platform(world, token)).status_code == 200
        time.sleep(0.4)
        refused = problem(client.get("/v1/holder/permit", headers=platform(world, token)), 401)
        assert "expired" in refused["detail"]
    finally:
        client.__exit__(None, None, None)


def test_only_the_platform_role_uses_holder_endpoints_and_it_uses_no_other(client: Any, world: World) -> None:
    code = world.es1(PERMITS["valid"])
    assert problem(client.post(SESSION, json={"code": code}, headers=world.headers("exit_entry")), 403)
    assert problem(client.post("/v1/holder/match", json={"name": "x", "dob": "1985-04-12", "pn": "x"},
                               headers=world.headers("admin")), 403)
    assert problem(client.get(f"/v1/permits/{PERMITS['valid'].pn}", headers=platform(world)), 403)
    assert problem(client.post("/v1/verify/qr", json={"qr": code, "terminal": "T"}, headers=platform(world)), 403)
    assert problem(client.post("/v1/permits/lookup", json={"by": "pn", "ids": ["x"]}, headers=platform(world)), 403)
    assert problem(client.get("/v1/holder/permit", headers={"X-Holder-Token": "pvh_" + "A" * 43}), 401)


def test_bad_bodies(client: Any, world: World) -> None:
    assert problem(client.post(SESSION, content=b"{", headers={**platform(world), "Content-Type": "application/json"}),
                   400)
    assert problem(client.post(SESSION, json={"code": "ES1:x", "pn": "WP1"}, headers=platform(world)), 400)
    assert problem(client.post(SESSION, json={}, headers=platform(world)), 400)["errors"][0]["key"] == "code"
    assert problem(client.post(SESSION, content=b'{"code": "' + b"A" * 140_000 + b'"}',
                               headers={**platform(world), "Content-Type": "application/json"}), 413)
    assert problem(client.post("/v1/holder/match", content=b"x" * 20_000,
                               headers={**platform(world), "Content-Type": "application/json"}), 413)


# --- the holder's permit -----------------------------------------------------------

def test_the_permit_has_every_field_and_every_card(client: Any, world: World) -> None:
    permit = PERMITS["card_lost"]
    response = sign_in(client, world, world.es1(permit))
    token = response.json()["token"]
    out = client.get("/v1/holder/permit", headers=platform(world, token)).json()
    assert out["permit"] == {
        "pn": permit.pn, "status": "active", "cat": permit.cat, "emp": permit.emp, "vf": permit.vf, "vt": permit.vt,
        "n": permit.n, "nat": permit.nat, "dob": permit.dob, "v": permit.v, "ssn": permit.ssn,
        "cn": "CNEW0000000000005", "card_status": "active",
    }
    assert out["cards"] == [{"cn": "CWP1100002020000005", "status": "lost"}, {"cn": "CNEW0000000000005", "status": "active"}]
    assert out["index_as_of"]["seq"] == world.index.seq
    assert 0 <= out["lag_s"] < 60


def test_a_cancelled_permits_holder_reads_that_it_is_cancelled(client: Any, world: World) -> None:
    token = token_for(client, world, "cancelled")
    assert client.get("/v1/holder/permit", headers=platform(world, token)).json()["permit"]["status"] == "cancelled"


# --- who verified me ---------------------------------------------------------------

def _register(world: World, organisation: str, terminal: str, name: str, place: str) -> None:
    run_async(world.store, lambda r: register_terminal(r, organisation, terminal, name, place))


def _items(client: Any, world: World, token: str, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/holder/verifications", params=params, headers=platform(world, token))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_who_verified_me_names_organisations_and_terminals(client: Any, world: World,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    valid, other = PERMITS["valid"], PERMITS["other_employer"]
    border_id, border = world.add_key("exit_entry", "desk 12 key", organisation="Shanghai Exit-Entry Administration")
    _register(world, "Shanghai Exit-Entry Administration", "PVG-T2-12", "Desk 12", "Pudong airport, T2 arrivals")
    _hr_id, hr = world.add_key("partner", "HR sync job", ("91110000100000000A",), organisation="Acme HR platform")

    def post(path: str, body: dict[str, Any], key: str) -> None:
        assert client.post(path, json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 200

    post("/v1/verify/qr", {"qr": world.wp1(valid), "terminal": "PVG-T2-12"}, border)
    post("/v1/verify/qr", {"qr": world.wp1(other), "terminal": "PVG-T2-12"}, border)  # another person
    post("/v1/permits/lookup", {"by": "pn", "ids": [valid.pn, other.pn, "WPNOPE"]}, hr)
    post("/v1/verify/manual", {"pn": valid.pn, "dob": "1900-01-01", "terminal": "UNREGISTERED-9"},
         world.token["social_insurance"])
    token = token_for(client, world)
    client.get("/v1/holder/permit", headers=platform(world, token))  # the holder's own read: not a check

    page = wait_until(lambda: (p := _items(client, world, token)) and len(p["items"]) >= 4 and p,
                      what="the checks in the holder's index")
    items = page["items"]
    assert page["next"] is None
    assert [(i["kind"], i["result"]) for i in items] == [
        ("sign_in", "VALID"), ("manual", "PERMIT_NOT_FOUND"), ("lookup", "found"), ("qr", "VALID")]
    sign_in_item, manual, lookup, qr = items
    assert qr == {"time": qr["time"], "organisation": "Shanghai Exit-Entry Administration", "terminal": "Desk 12",
                  "place": "Pudong airport, T2 arrivals", "kind": "qr", "code": "WP1", "result": "VALID"}
    assert (lookup["organisation"], lookup["terminal"], lookup["code"]) == ("Acme HR platform", None, None)
    assert (manual["organisation"], manual["terminal"], manual["place"]) == ("test social_insurance", "UNREGISTERED-9",
                                                                             None)
    assert (sign_in_item["organisation"], sign_in_item["code"]) == ("test essc_platform", "ES1")
    assert qr["time"] < lookup["time"] < manual["time"] <= sign_in_item["time"]
    body = orjson.dumps(page).decode()
    assert border_id not in body and world.key_id["social_insurance"] not in body  # names, not key ids

    # a renamed terminal shows its new name for the earlier check too (once the worker's copy of
    # the names, NAMES_TTL_S old at most, is renewed: here at once)
    monkeypatch.setattr(holder_service, "NAMES_TTL_S", 0.0)
    _register(world, "Shanghai Exit-Entry Administration", "PVG-T2-12", "Desk 12A", "Pudong airport, T2 arrivals")
    assert _items(client, world, token)["items"][-1]["terminal"] == "Desk 12A"
    # the other holder sees their own checks only; the partner's look-up did not show their
    # permit (another employer's), so it is no check of theirs
    other_token = client.post(SESSION, json={"code": world.es1(other)}, headers=platform(world)).json()["token"]
    theirs = wait_until(lambda: (p := _items(client, world, other_token)["items"]) and len(p) >= 2 and p)
    assert [(i["kind"], i["result"]) for i in theirs] == [("sign_in", "VALID"), ("qr", "VALID")]


def test_pages_by_cursor_and_since(client: Any, world: World) -> None:
    valid = PERMITS["valid"]
    for n in range(7):
        assert client.post("/v1/verify/qr", json={"qr": world.wp1(valid), "terminal": f"T-{n}"},
                           headers=world.headers("exit_entry")).status_code == 200
        time.sleep(0.003)  # distinct milliseconds
    token = token_for(client, world)
    wait_until(lambda: len(_items(client, world, token)["items"]) == 8, what="8 checks")
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = _items(client, world, token, **params)
        seen += page["items"]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3
    assert [i["terminal"] for i in seen] == [None] + [f"T-{n}" for n in reversed(range(7))]
    assert len({(i["time"], i["terminal"]) for i in seen}) == 8
    since = seen[3]["time"]
    recent = _items(client, world, token, since=since)["items"]
    assert [i["terminal"] for i in recent] == [i["terminal"] for i in seen[:4]]
    assert _items(client, world, token, since="2999-01-01")["items"] == []


def test_cursors_and_since_that_are_not_right(client: Any, world: World) -> None:
    for n in range(3):
        client.post("/v1/verify/qr", json={"qr": world.wp1(PERMITS["valid"]), "terminal": "T"},
                    headers=world.headers("exit_entry"))
        client.post("/v1/verify/qr", json={"qr": world.wp1(PERMITS["cancelled"]), "terminal": "T"},
                    headers=world.headers("exit_entry"))
        time.sleep(0.003)
    mine, theirs = token_for(client, world), token_for(client, world, "cancelled")
    wait_until(lambda: _items(client, world, theirs, limit=1)["next"])
    their_cursor = _items(client, world, theirs, limit=1)["next"]
    refused = problem(client.get("/v1/holder/verifications", params={"cursor": their_cursor},
                                 headers=platform(world, mine)), 403)
    assert "another holder" in refused["detail"]
    assert (refused["type"], refused["title"]) == ("/problems/another-holder", "This belongs to another holder")
    for cursor in ("garbage", "MS5hYmMueC4x", "", "A" * 129):
        assert problem(client.get("/v1/holder/verifications", params={"cursor": cursor},
                                  headers=platform(world, mine)), 400)
    for since in ("yesterday", "2026-13-45"):
        assert "since" in problem(client.get("/v1/holder/verifications", params={"since": since},
                                             headers=platform(world, mine)), 400)["detail"]
    for limit in ("0", "201", "x"):
        assert problem(client.get("/v1/holder/verifications", params={"limit": limit},
                                  headers=platform(world, mine)), 400)


def test_every_holder_call_is_audited_and_the_log_names_nobody(client: Any, world: World,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    permit = PERMITS["valid"]
    with caplog.at_level(logging.DEBUG):
        token = token_for(client, world)
        client.get("/v1/holder/permit", headers=platform(world, token))
        client.get("/v1/holder/verifications", headers=platform(world, token))
        client.post("/v1/holder/match", json={"name": permit.n, "dob": permit.dob, "pn": permit.pn},
                    headers=platform(world))
        client.delete(SESSION, headers=platform(world, token))
        wanted = {"sign_in", "holder_permit", "holder_verifications", "match", "holder_sign_out"}
        records = wait_until(lambda: (r := audit_records(world)) and wanted <= {x["kind"] for x in r} and r,
                             what="the holder calls in the audit")
    mine = [r for r in records if r["key"] == world.key_id[PLATFORM]]
    assert {r["kind"] for r in mine} == wanted
    assert all(r["pn"] == permit.pn for r in mine)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (permit.pn, permit.n, permit.dob, token):
        assert secret not in logged


# --- real-name match ---------------------------------------------------------------

@pytest.mark.parametrize(("given", "same"), [
    ("SMITH JOHN", True), ("John Smith", True), ("smith,  john", True), ("Jöhn Smíth", True),
    ("JOHN-SMITH", True), ("John Smith Junior", False), ("Jon Smith", False), ("Smith", False),
])
def test_names_compare_after_normalisation(given: str, same: bool) -> None:
    assert (name_parts(given) == name_parts("SMITH JOHN")) is same


def test_normalisation_spells_out_and_drops_apostrophes() -> None:
    assert name_parts("O'Brien, Seán") == name_parts("OBRIEN SEAN")
    assert name_parts("Groß Øyvind") == name_parts("GROSS OYVIND")
    assert name_parts("DOE<<JANE") == name_parts("Jane Doe")
    assert name_parts("Иван Петров") == ("иван", "петров")  # other scripts are kept, not dropped


def test_match_answers_with_reason_codes_only(client: Any, world: World) -> None:
    permit = PERMITS["valid"]

    def match(**body: str) -> dict[str, Any]:
        response = client.post("/v1/holder/match", json=body, headers=platform(world))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    assert match(name="john smith", dob=permit.dob, pn=permit.pn.lower()) == {"result": "match", "reasons": []}
    assert match(name="Smith, John", dob=permit.dob, ssn=permit.ssn) == {"result": "match", "reasons": []}
    assert match(name="Jane Smith", dob=permit.dob, pn=permit.pn) == {
        "result": "no_match", "reasons": ["match.name_differs"]}
    assert match(name="John Smith", dob="1985-04-13", pn=permit.pn) == {
        "result": "no_match", "reasons": ["match.dob_differs"]}
    assert match(name="Jane Doe", dob="2000-01-01", pn=permit.pn)["reasons"] == ["match.name_differs",
                                                                                 "match.dob_differs"]
    unknown = match(name="John Smith", dob=permit.dob, pn="WP1100002020999999")
    assert unknown == {"result": "no_match", "reasons": ["match.identifier_unknown"]}
    # both: the pair must name one permit
    assert match(name="John Smith", dob=permit.dob, pn=permit.pn, ssn=permit.ssn)["result"] == "match"
    assert match(name="John Smith", dob=permit.dob, pn=permit.pn, ssn=PERMITS["cancelled"].ssn)["reasons"] == [
        "match.identifier_unknown"]
    assert problem(client.post("/v1/holder/match", json={"name": "x", "dob": permit.dob}, headers=platform(world)),
                   400)
    # a date that is no date matches nobody's
    assert match(name="John Smith", dob="1985-02-30", pn=permit.pn)["reasons"] == ["match.dob_differs"]


def test_match_is_limited_per_identifier(world: World) -> None:
    client = open_client(world.settings(holder_match_per_identifier_per_h=3))
    try:
        permit = PERMITS["valid"]
        body = {"name": "Someone Else", "dob": "2000-01-01", "pn": permit.pn}
        answers = [client.post("/v1/holder/match", json=body, headers=platform(world)) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        # the same permit number, written otherwise, is the same identifier
        refused = problem(client.post("/v1/holder/match", json={**body, "pn": " " + permit.pn.lower()},
                                      headers=platform(world)), 429)
        assert "pn" in refused["detail"]
        assert int(client.post("/v1/holder/match", json=body, headers=platform(world)).headers["Retry-After"]) >= 60
        # another identifier is not held back by this one
        other = {**body, "pn": PERMITS["cancelled"].pn}
        assert client.post("/v1/holder/match", json=other, headers=platform(world)).status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_match_is_limited_per_platform_key(world: World) -> None:
    client = open_client(world.settings(holder_match_per_s=0.5))  # a burst of 2
    try:
        answers = [client.post("/v1/holder/match", json={"name": "A B", "dob": "2000-01-01", "pn": f"WP{n:016d}"},
                               headers=platform(world)) for n in range(3)]
        assert [a.status_code for a in answers[:2]] == [200, 200]
        refused = problem(answers[2], 429)
        assert "platform key" in refused["detail"]
        assert int(answers[2].headers["Retry-After"]) >= 1
        # the key's general rate limit is another bucket: its other calls still go through
        assert client.post(SESSION, json={"code": world.es1(PERMITS["valid"])}, headers=platform(world)).status_code \
            == 200
    finally:
        client.__exit__(None, None, None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_name_normalises_without_error(name: str) -> None:
    parts = name_parts(name)
    assert parts == tuple(sorted(parts)) and all(parts)
    assert name_parts(" ".join(reversed(parts))) == parts  # order of the parts never matters
