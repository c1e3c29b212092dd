"""POST /v1/verify/qr and /v1/verify/qr/batch: every result code a scan can get, through the API."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import msgspec
import pytest

from verifier.issuing import IssuerKey, encode_qr, sign_cose
from verifier.issuing.mint import permit_map
from tests.api.conftest import ISSUER, NOT_IN_INDEX, PERMITS, World

QR = "/v1/verify/qr"


def verify(client: Any, world: World, text: str, *, role: str = "exit_entry", terminal: str = "T-1",
           **extra: Any) -> dict[str, Any]:
    response = client.post(QR, json={"qr": text, "terminal": terminal, **extra}, headers=world.headers(role))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_valid_wp1_has_the_whole_verdict_shape(client: Any, world: World) -> None:
    verdict = verify(client, world, world.wp1(PERMITS["valid"]))
    assert verdict["result"] == "VALID"
    assert verdict["reasons"] == []
    assert verdict["profile"] == "WP1"
    assert verdict["permit"]["pn"] == PERMITS["valid"].pn
    assert verdict["permit"]["status"] == "active"
    checked = dt.datetime.fromisoformat(verdict["checked_at"].replace("Z", "+00:00"))
    assert abs(checked.timestamp() - time.time()) < 60
    assert verdict["index_as_of"]["seq"] == world.index.seq
    assert verdict["index_as_of"]["time"].endswith("Z")
    assert 0 <= verdict["lag_s"] < 60
    assert "repeat" not in verdict and "receipt" not in verdict


def test_valid_es1(client: Any, world: World) -> None:
    verdict = verify(client, world, world.es1(PERMITS["valid"]))
    assert (verdict["result"], verdict["profile"]) == ("VALID", "ES1")


def test_permit_ending_today_is_still_valid(client: Any, world: World) -> None:
    # WIRE-FORMAT 3: vt is inclusive, in China Standard Time.
    assert verify(client, world, world.es1(PERMITS["ends_today"]))["result"] == "VALID"


def test_wp1_without_a_card_is_valid(client: Any, world: World) -> None:
    assert verify(client, world, world.wp1(PERMITS["no_card"]))["result"] == "VALID"


def _bad_signature_code(world: World) -> str:
    # Signed by another key, but naming the trusted key's kid.
    impostor = IssuerKey.generate([ISSUER])
    now = int(time.time())
    claims = {1: ISSUER, 4: now + 3600, 6: now - 60, -70001: permit_map(PERMITS["valid"])}
    return encode_qr("WP1:", sign_cose(impostor, claims, protected_extra={4: world.issuer.kid}))


@pytest.mark.parametrize(
    ("case", "result", "reason"),
    [
        ("malformed", "MALFORMED", "base45.alphabet"),
        ("unsupported", "UNSUPPORTED", "prefix.unknown"),
        ("unknown_key", "UNKNOWN_KEY", "key.unknown"),
        ("revoked_key", "KEY_REVOKED", "key.revoked"),
        ("bad_signature", "BAD_SIGNATURE", "signature.invalid"),
        ("not_yet_valid", "NOT_YET_VALID", "time.not_yet_valid"),
        ("expired", "EXPIRED", "time.expired"),
        ("not_found", "PERMIT_NOT_FOUND", "status.not_found"),
        ("cancelled", "PERMIT_CANCELLED", "status.cancelled"),
        ("permit_expired", "PERMIT_EXPIRED", "status.permit_expired"),
        ("superseded", "SUPERSEDED", "status.superseded"),
        ("card_lost", "CARD_INVALID", "status.card_lost"),
        ("card_replaced", "CARD_INVALID", "status.card_replaced"),
        ("card_unknown", "CARD_INVALID", "status.card_unknown"),
        ("index_behind", "STATUS_UNAVAILABLE", "status.index_behind"),
    ],
)
def test_every_result_code_of_a_scan(client: Any, world: World, case: str, result: str, reason: str) -> None:
    now = int(time.time())
    lost = PERMITS["card_lost"]
    texts = {
        "malformed": "WP1:this is not base45",
        "unsupported": "XX9:" + world.wp1(PERMITS["valid"])[4:],
        "unknown_key": world.wp1(PERMITS["valid"], key=IssuerKey.generate([ISSUER])),
        "revoked_key": world.wp1(PERMITS["valid"], key=world.revoked),
        "bad_signature": _bad_signature_code(world),
        "not_yet_valid": world.wp1(PERMITS["valid"], iat=now + 3600),
        "expired": world.wp1(PERMITS["valid"], iat=now - 7200, exp=now - 3600),
        "not_found": world.wp1(NOT_IN_INDEX),
        "cancelled": world.wp1(PERMITS["cancelled"]),
        # the token is still within its time; the index says the permit ended yesterday
        "permit_expired": world.es1(PERMITS["expired"]),
        # the token was made from version 2; the index has version 3
        "superseded": world.wp1(msgspec.structs.replace(PERMITS["superseded"], v=2)),
        "card_lost": world.wp1({**permit_map(lost), "cn": "CWP1100002020000005"}),
        "card_replaced": world.wp1({**permit_map(PERMITS["card_replaced"]), "cn": "CWP1100002020000006"}),
        "card_unknown": world.wp1({**permit_map(PERMITS["valid"]), "cn": "CSOMEONE-ELSES"}),
        # a token from a version the index has not seen yet (the index lags): never VALID
        "index_behind": world.wp1(msgspec.structs.replace(PERMITS["valid"], v=7)),
    }
    verdict = verify(client, world, texts[case])
    assert verdict["result"] == result
    assert verdict["reasons"] == [reason]
    if result in ("MALFORMED", "UNSUPPORTED", "UNKNOWN_KEY", "KEY_REVOKED", "BAD_SIGNATURE",
                  "NOT_YET_VALID", "EXPIRED"):
        assert verdict["permit"] is None  # nothing unverified is shown
        assert verdict["index_as_of"] is None
    else:
        assert verdict["permit"]["pn"]
        assert verdict["index_as_of"]["seq"] == world.index.seq


def test_status_order_cancelled_before_expired_before_superseded(client: Any, world: World) -> None:
    # WIRE-FORMAT 5: the first failing row of the table gives the result.
    permit = msgspec.structs.replace(PERMITS["valid"], status="cancelled", vt=PERMITS["expired"].vt,
                                     vf=PERMITS["expired"].vf, v=5)
    world.index.change(permit, "cancel")
    token = msgspec.structs.replace(permit, status="active", v=4)
    assert verify(client, world, world.es1(token))["result"] == "PERMIT_CANCELLED"


def test_es1_replayed_from_another_terminal(client: Any, world: World) -> None:
    text = world.es1(PERMITS["valid"])
    assert verify(client, world, text, terminal="T-1")["result"] == "VALID"
    second = verify(client, world, text, terminal="T-2")
    assert (second["result"], second["reasons"]) == ("REPLAYED", ["status.replayed"])
    # the permit is still shown, so that the officer knows whose code was replayed
    assert second["permit"]["pn"] == PERMITS["valid"].pn


def test_es1_double_read_by_the_same_terminal_is_a_repeat(client: Any, world: World) -> None:
    text = world.es1(PERMITS["valid"])
    first = verify(client, world, text, terminal="T-1")
    again = verify(client, world, text, terminal="T-1")
    assert first["result"] == again["result"] == "VALID"
    assert "repeat" not in first
    assert again["repeat"] is True
    # the same terminal name under another API key is another terminal
    other = verify(client, world, text, terminal="T-1", role="service_hall")
    assert other["result"] == "REPLAYED"


def test_es1_double_read_window_is_ten_seconds(client: Any, world: World) -> None:
    # The guard entry says when the code was first read; age it past the window.
    text = world.es1(PERMITS["valid"])
    assert verify(client, world, text, terminal="T-1")["result"] == "VALID"
    (key,) = world.redis_sync.keys("pv:cti:*")
    first_ms, _, reader = world.redis_sync.get(key).decode().partition("|")
    world.redis_sync.set(key, f"{int(first_ms) - 11_000}|{reader}", keepttl=True)
    assert verify(client, world, text, terminal="T-1")["result"] == "REPLAYED"


def test_replay_guard_lives_until_the_token_expires(client: Any, world: World) -> None:
    text = world.es1(PERMITS["valid"], iat=int(time.time()) - 10, lifetime=120)
    verify(client, world, text)
    (key,) = world.redis_sync.keys("pv:cti:*")
    ttl = world.redis_sync.pttl(key)
    # exp (iat + 120) + 60 s leeway - now, about 170 s
    assert 160_000 < ttl <= 171_000


def test_a_failed_es1_is_not_consumed(client: Any, world: World) -> None:
    # Only an accepted code uses up its cti: a cancelled permit's code is not "seen".
    text = world.es1(PERMITS["cancelled"])
    assert verify(client, world, text, terminal="T-1")["result"] == "PERMIT_CANCELLED"
    assert verify(client, world, text, terminal="T-2")["result"] == "PERMIT_CANCELLED"
    assert world.redis_sync.keys("pv:cti:*") == []


@pytest.mark.parametrize(
    ("role", "shown", "hidden"),
    [
        ("exit_entry", {"pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v", "status", "cn", "card_status"}, {"ssn"}),
        ("service_hall", {"pn", "n", "dob", "ssn", "cn", "status"}, set()),
        ("social_insurance", {"pn", "n", "dob", "ssn", "cn", "status"}, set()),
    ],
)
def test_permit_fields_follow_the_role(client: Any, world: World, role: str, shown: set[str], hidden: set[str]) -> None:
    verdict = verify(client, world, world.es1(PERMITS["valid"]), role=role)
    assert verdict["result"] == "VALID"
    assert shown <= verdict["permit"].keys()
    assert not hidden & verdict["permit"].keys()


@pytest.mark.parametrize("role", ["partner", "admin"])
def test_roles_that_do_not_verify_get_403(client: Any, world: World, role: str) -> None:
    response = client.post(QR, json={"qr": world.wp1(PERMITS["valid"]), "terminal": "T"}, headers=world.headers(role))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


def test_batch_keeps_the_order(client: Any, world: World) -> None:
    codes = [
        world.wp1(PERMITS["valid"]),
        "WP1:broken",
        world.wp1(PERMITS["cancelled"]),
        world.es1(PERMITS["valid"]),
        world.wp1(NOT_IN_INDEX),
        world.wp1(PERMITS["valid"]),
    ]
    response = client.post("/v1/verify/qr/batch", json={"codes": codes, "terminal": "T-9"},
                           headers=world.headers("social_insurance"))
    assert response.status_code == 200, response.text
    results = [v["result"] for v in response.json()["verdicts"]]
    assert results == ["VALID", "MALFORMED", "PERMIT_CANCELLED", "VALID", "PERMIT_NOT_FOUND", "VALID"]


def test_batch_of_1000_and_not_1001(client: Any, world: World) -> None:
    text = world.wp1(PERMITS["valid"])
    ok = client.post("/v1/verify/qr/batch", json={"codes": [text] * 1000, "terminal": "T"},
                     headers=world.headers("exit_entry"))
    assert ok.status_code == 200
    assert {v["result"] for v in ok.json()["verdicts"]} == {"VALID"}
    assert len(ok.json()["verdicts"]) == 1000
    too_many = client.post("/v1/verify/qr/batch", json={"codes": [text] * 1001, "terminal": "T"},
                           headers=world.headers("exit_entry"))
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["key"] == "codes"


def test_repeated_scans_use_the_verdict_cache_and_the_near_cache(client: Any, world: World) -> None:
    text = world.wp1(PERMITS["valid"])
    for _ in range(5):
        assert verify(client, world, text)["result"] == "VALID"
    metrics = client.app.state.runtime.metrics
    runtime = client.app.state.runtime
    assert runtime.near_cache.hits >= 4
    assert metrics is runtime.metrics
    body = client.get("/metrics").text
    assert 'pv_signature_cache_total{outcome="hit"}' in body
    assert 'pv_near_cache_total{outcome="hit"}' in body


@pytest.mark.parametrize(
    ("floor", "result", "reason"),
    [
        (None, "STATUS_UNAVAILABLE", "status.index_behind"),     # no regression: the index lags
        (6, "STATUS_UNAVAILABLE", "status.index_behind"),        # the lost versions stopped below 7
        (7, "SUPERSEDED", "status.upstream_regressed"),         # v7 was lost by an accepted regression
        (9, "SUPERSEDED", "status.upstream_regressed"),
    ],
)
def test_a_token_from_a_version_an_accepted_regression_took_away(
        client: Any, world: World, floor: int | None, result: str, reason: str) -> None:
    # verifier.index.regression: the floors the sync job keeps when the operator accepts an
    # upstream restored to an older state; never VALID either way.
    pn = PERMITS["valid"].pn
    if floor is not None:
        world.redis_sync.hset("{pv}:regression:floors", pn, floor)
    verdict = verify(client, world, world.wp1(msgspec.structs.replace(PERMITS["valid"], v=7)))
    assert (verdict["result"], verdict["reasons"]) == (result, [reason])
