"""The public test vectors of WIRE-FORMAT (tests/data/vectors.json, copied from the spec) on both twins."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import fastpath
from fastpath import codes

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent.parent / "data" / "vectors.json").read_text())
NOW: int = VECTORS["now"]


@pytest.fixture(scope="module")
def vector_trust() -> fastpath.TrustList:
    return fastpath.TrustList.from_jwks(json.dumps(VECTORS["trust_list"]))


def test_vectors_cover_the_qr_and_card_results() -> None:
    assert len(VECTORS["qr"]) >= 10 and len(VECTORS["card"]) >= 2


@pytest.mark.parametrize("vector", VECTORS["qr"], ids=[v["name"] for v in VECTORS["qr"]])
def test_qr_vector(twin: ModuleType, vector_trust: fastpath.TrustList, vector: dict[str, Any]) -> None:
    verdict = twin.verify_qr(vector["text"], vector_trust, NOW, cache=False)
    assert verdict.result == vector["result"], verdict
    assert (verdict.reasons == ()) == (vector["result"] == codes.VALID)


@pytest.mark.parametrize("vector", VECTORS["card"], ids=[v["name"] for v in VECTORS["card"]])
def test_card_vector(twin: ModuleType, vector_trust: fastpath.TrustList, vector: dict[str, Any]) -> None:
    verdict = twin.verify_card(bytes.fromhex(vector["certificate_hex"]), bytes.fromhex(vector["challenge_hex"]),
                               bytes.fromhex(vector["signature_hex"]), vector_trust, NOW)
    assert verdict.result == vector["result"], verdict
    assert verdict.profile == codes.PROFILE_CARD


def test_valid_wp1_vector_decodes_the_permit(twin: ModuleType, vector_trust: fastpath.TrustList) -> None:
    verdict = twin.verify_qr(VECTORS["qr"][0]["text"], vector_trust, NOW)
    assert verdict.ok and verdict.profile == codes.PROFILE_WP1
    assert verdict.permit is not None and verdict.permit["pn"] == "WP1100002025004711"
    assert verdict.claims is not None and verdict.claims["iss"] == "CN-110000"
    assert verdict.kid == bytes.fromhex("f0ec10fcae52976f")


def test_valid_card_vector_gives_the_card(twin: ModuleType, vector_trust: fastpath.TrustList) -> None:
    card = VECTORS["card"][0]
    verdict = twin.verify_card_certificate(bytes.fromhex(card["certificate_hex"]), vector_trust, NOW)
    assert verdict.ok
    assert verdict.permit == {"cn": "S11000098765432", "ssn": "9110000199007150027", "pn": "WP1100002025004711"}
    assert verdict.card_public_key is not None and len(verdict.card_public_key) == 32
    assert twin.check_card_signature(verdict.card_public_key, bytes.fromhex(card["challenge_hex"]),
                                     bytes.fromhex(card["signature_hex"])) is None
