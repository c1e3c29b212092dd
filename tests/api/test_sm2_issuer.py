"""The API with an issuer that signs with SM2 and SM3 (WIRE-FORMAT 9): scans, card reads,
statuses, and the trust list's rotation and revocation of SM2 keys, through the real app
and a real Redis."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from verifier.issuing import IssuerKey, SoftwareCard, mint_card_certificate
from verifier.issuing.mint import permit_map
from tests.api.conftest import ISSUER, PERMITS, World, wait_until
from tests.api.test_cards import challenge, read_card


@pytest.fixture
def issuer() -> IssuerKey:
    """The world's issuer signs with SM2 (this module only)."""
    return IssuerKey.generate([ISSUER, "CN-310000"], alg="SM2-SM3", user_id=b"CN-110000 permits")


def scan(client: Any, world: World, text: str, terminal: str = "T-1") -> dict[str, Any]:
    response = client.post("/v1/verify/qr", headers=world.headers("exit_entry"), json={"qr": text, "terminal": terminal})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_sm2_codes_verify_and_their_status_is_checked(client: Any, world: World) -> None:
    assert world.issuer.alg == "SM2-SM3"
    for key, result in (("valid", "VALID"), ("cancelled", "PERMIT_CANCELLED")):
        assert scan(client, world, world.wp1(PERMITS[key]))["result"] == result, key
    lost = {**permit_map(PERMITS["card_replaced"]), "cn": "CWP1100002020000006"}
    assert scan(client, world, world.wp1(lost))["result"] == "CARD_INVALID"
    older = msgspec.structs.replace(PERMITS["superseded"], v=2)
    assert scan(client, world, world.wp1(older))["result"] == "SUPERSEDED"
    es1 = world.es1(PERMITS["valid"])
    assert scan(client, world, es1)["result"] == "VALID"
    assert scan(client, world, es1, terminal="T-2")["result"] == "REPLAYED"


def test_the_served_trust_list_carries_the_sm2_key(client: Any, world: World) -> None:
    keys = {k["kid"]: k for k in client.get("/v1/trust-list").json()["keys"]}
    jwk = keys[world.issuer.kid_text]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "SM2", "SM2-SM3") and "y" in jwk and "distid" in jwk


def test_a_card_read_with_an_sm2_certificate(client: Any, world: World) -> None:
    card = SoftwareCard.generate()
    permit = PERMITS["valid"]
    certificate = mint_card_certificate(world.issuer, {"cn": permit.cn, "ssn": permit.ssn, "pn": permit.pn},
                                        card.public_key, iat=1, exp=2**40)
    nonce = challenge(client, world)
    verdict = read_card(client, world, certificate, nonce, card.sign_challenge(nonce))
    assert (verdict["result"], verdict["profile"]) == ("VALID", "CARD"), verdict


def test_an_sm2_issuer_rotates_to_ed25519_then_revokes_its_sm2_key(client: Any, world: World) -> None:
    old = world.wp1(PERMITS["valid"])
    newcomer = IssuerKey.generate([ISSUER])
    retired = world.issuer.with_status("retired")
    world.store_trust_list(retired, world.revoked, newcomer)
    wait_until(lambda: scan(client, world, world.wp1(PERMITS["valid"], key=newcomer))["result"] == "VALID",
               timeout_s=3, what="the rotated list")
    assert scan(client, world, old)["result"] == "VALID"  # retired: still verifies
    world.store_trust_list(retired.with_status("revoked"), world.revoked, newcomer)
    wait_until(lambda: scan(client, world, old)["result"] == "KEY_REVOKED", timeout_s=3, what="the revocation")
    assert scan(client, world, old)["reasons"] == ["key.revoked"]


def test_the_worker_says_what_verifies_its_sm2_keys(client: Any, world: World, caplog: Any) -> None:
    # An operator sees in the log whether SM2 is OpenSSL's or gmalg's fallback.
    caplog.set_level(logging.INFO, logger="verifier.trust")
    world.store_trust_list(world.issuer, world.revoked, IssuerKey.generate([ISSUER], alg="SM2-SM3"))

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "verifier.trust" and "in force" in r.getMessage()]

    wait_until(said, timeout_s=3, what="the new list's log line")
    line = said()[-1]
    assert "(3 keys," in line and "2 SM2, verified by openssl (OpenSSL 3" in line, said()
