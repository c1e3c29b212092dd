"""POST /v1/cards/challenge and /v1/verify/card (WIRE-FORMAT 6), with software cards."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
from typing import Any

import pytest

from verifier.issuing import SoftwareCard, mint_card_certificate
from tests.api.conftest import PERMITS, World


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def certificate_for(world: World, card: SoftwareCard, pn_key: str, cn: str | None = None) -> bytes:
    permit = PERMITS[pn_key]
    body = {"cn": cn or permit.cn, "ssn": permit.ssn, "pn": permit.pn}
    now = int(time.time())
    return mint_card_certificate(world.issuer, body, card.public_key, iat=now - 86400, exp=now + 86400 * 365)


def challenge(client: Any, world: World, role: str = "exit_entry") -> bytes:
    response = client.post("/v1/cards/challenge", headers=world.headers(role))
    assert response.status_code == 200, response.text
    body = response.json()
    expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert 55 < expires - time.time() <= 61
    value = base64.b64decode(body["challenge"], validate=True)
    assert len(value) == 32
    return value


def read_card(client: Any, world: World, certificate: bytes, nonce: bytes, signature: bytes,
              role: str = "exit_entry") -> dict[str, Any]:
    response = client.post("/v1/verify/card", headers=world.headers(role), json={
        "certificate": b64(certificate), "challenge": b64(nonce), "signature": b64(signature), "terminal": "CARD-1",
    })
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_good_card_read_is_valid(client: Any, world: World) -> None:
    card = SoftwareCard.generate()
    nonce = challenge(client, world)
    verdict = read_card(client, world, certificate_for(world, card, "valid"), nonce, card.sign_challenge(nonce))
    assert (verdict["result"], verdict["profile"], verdict["reasons"]) == ("VALID", "CARD", [])
    permit = verdict["permit"]
    assert permit["pn"] == PERMITS["valid"].pn
    assert permit["n"] == PERMITS["valid"].n  # from the index: the certificate holds no name
    assert (permit["cn"], permit["card_status"], permit["status"]) == (PERMITS["valid"].cn, "active", "active")


def test_a_challenge_is_used_once(client: Any, world: World) -> None:
    card = SoftwareCard.generate()
    certificate = certificate_for(world, card, "valid")
    nonce = challenge(client, world)
    assert read_card(client, world, certificate, nonce, card.sign_challenge(nonce))["result"] == "VALID"
    again = read_card(client, world, certificate, nonce, card.sign_challenge(nonce))
    assert (again["result"], again["reasons"]) == ("CHALLENGE_INVALID", ["challenge.unknown"])


@pytest.mark.parametrize("case", ["never_issued", "expired", "another_keys", "short"])
def test_challenges_that_are_not_valid(client: Any, world: World, case: str) -> None:
    card = SoftwareCard.generate()
    certificate = certificate_for(world, card, "valid")
    if case == "never_issued":
        nonce = os.urandom(32)
    elif case == "another_keys":
        nonce = challenge(client, world, role="service_hall")
    else:
        nonce = challenge(client, world)
    if case == "expired":
        (key,) = world.redis_sync.keys("pv:challenge:*")
        assert 55_000 < world.redis_sync.pttl(key) <= 60_000
        world.redis_sync.delete(key)  # what its 60 s expiry does
    if case == "short":
        verdict = read_card(client, world, certificate, nonce[:31], card.sign_challenge(nonce))
    else:
        verdict = read_card(client, world, certificate, nonce, card.sign_challenge(nonce))
    assert verdict["result"] == "CHALLENGE_INVALID"


def test_a_bad_certificate_uses_the_challenge_up(client: Any, world: World) -> None:
    card = SoftwareCard.generate()
    nonce = challenge(client, world)
    bad = read_card(client, world, b"\x84not a cose message", nonce, card.sign_challenge(nonce))
    assert bad["result"] == "MALFORMED"
    assert bad["permit"] is None
    good = read_card(client, world, certificate_for(world, card, "valid"), nonce, card.sign_challenge(nonce))
    assert good["result"] == "CHALLENGE_INVALID"


def test_another_cards_signature_is_bad(client: Any, world: World) -> None:
    card, thief = SoftwareCard.generate(), SoftwareCard.generate()
    nonce = challenge(client, world)
    verdict = read_card(client, world, certificate_for(world, card, "valid"), nonce, thief.sign_challenge(nonce))
    assert (verdict["result"], verdict["reasons"]) == ("BAD_SIGNATURE", ["card.signature_invalid"])
    assert verdict["permit"] is None


def test_a_short_signature_is_malformed(client: Any, world: World) -> None:
    card = SoftwareCard.generate()
    nonce = challenge(client, world)
    verdict = read_card(client, world, certificate_for(world, card, "valid"), nonce, card.sign_challenge(nonce)[:63])
    assert (verdict["result"], verdict["reasons"]) == ("MALFORMED", ["card.signature_length"])


@pytest.mark.parametrize(
    ("pn_key", "cn", "result", "reason"),
    [
        ("card_lost", "CWP1100002020000005", "CARD_INVALID", "status.card_lost"),
        ("card_replaced", "CWP1100002020000006", "CARD_INVALID", "status.card_replaced"),
        ("cancelled", None, "PERMIT_CANCELLED", "status.cancelled"),
        ("expired", None, "PERMIT_EXPIRED", "status.permit_expired"),
    ],
)
def test_card_status(client: Any, world: World, pn_key: str, cn: str | None, result: str, reason: str) -> None:
    card = SoftwareCard.generate()
    nonce = challenge(client, world)
    verdict = read_card(client, world, certificate_for(world, card, pn_key, cn), nonce, card.sign_challenge(nonce))
    assert (verdict["result"], verdict["reasons"]) == (result, [reason])


def test_card_endpoints_need_a_verifying_role(client: Any, world: World) -> None:
    assert client.post("/v1/cards/challenge", headers=world.headers("partner")).status_code == 403
    assert client.post("/v1/cards/challenge").status_code == 401


def test_card_body_must_be_base64(client: Any, world: World) -> None:
    response = client.post("/v1/verify/card", headers=world.headers("exit_entry"), json={
        "certificate": "not base64!!", "challenge": b64(b"x" * 32), "signature": b64(b"y" * 64), "terminal": "T",
    })
    assert response.status_code == 400
    assert response.json()["errors"][0]["key"] == "certificate"
