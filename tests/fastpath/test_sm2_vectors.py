"""The SM2 conformance vectors of WIRE-FORMAT 9 (tests/data/sm2-vectors.json) on both twins.

The vectors were made by tests/data/make_sm2_vectors.py with gmssl, an SM2
implementation that neither twin uses (the compiled twin verifies with OpenSSL's
libcrypto, the Python twin with gmalg): three implementations agree on each one.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import fastpath
from fastpath import codes
from tests.data import make_sm2_vectors

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent.parent / "data" / "sm2-vectors.json").read_text())
NOW: int = VECTORS["now"]


@pytest.fixture(scope="module")
def vector_trust() -> fastpath.TrustList:
    return fastpath.TrustList.from_jwks(json.dumps(VECTORS["trust_list"]))


def test_the_file_is_what_the_script_makes() -> None:
    # The committed vectors are reproducible: deterministic nonces, keys from labels.
    assert make_sm2_vectors.render(make_sm2_vectors.build()) == (Path(__file__).parent.parent / "data"
                                                                 / "sm2-vectors.json").read_text()


def test_the_vectors_cover_what_the_issue_names() -> None:
    names = " | ".join(v["name"] for v in VECTORS["qr"] + VECTORS["card"] + VECTORS["refused_trust_lists"])
    for topic in ("default user id", "distid", "wrong user id", "high s", "SHA-256", "without Z", "off the curve",
                  "point at infinity", "non-canonical", "DER", "algorithm confusion", "card"):
        assert topic in names, topic
    results = {v["result"] for v in VECTORS["qr"]}
    assert {codes.VALID, codes.BAD_SIGNATURE, codes.MALFORMED, codes.UNKNOWN_KEY, codes.UNSUPPORTED,
            codes.KEY_REVOKED} <= results


@pytest.mark.parametrize("vector", VECTORS["qr"], ids=[v["name"] for v in VECTORS["qr"]])
def test_qr_vector(twin: ModuleType, vector_trust: fastpath.TrustList, vector: dict[str, Any]) -> None:
    verdict = twin.verify_qr(vector["text"], vector_trust, NOW, cache=False)
    assert (verdict.result, list(verdict.reasons)) == (vector["result"], vector["reasons"]), verdict


@pytest.mark.parametrize("vector", VECTORS["card"], ids=[v["name"] for v in VECTORS["card"]])
def test_card_vector(twin: ModuleType, vector_trust: fastpath.TrustList, vector: dict[str, Any]) -> None:
    verdict = twin.verify_card(bytes.fromhex(vector["certificate_hex"]), bytes.fromhex(vector["challenge_hex"]),
                               bytes.fromhex(vector["signature_hex"]), vector_trust, NOW)
    assert (verdict.result, list(verdict.reasons)) == (vector["result"], vector["reasons"]), verdict
    assert verdict.profile == codes.PROFILE_CARD


@pytest.mark.parametrize("case", VECTORS["refused_trust_lists"], ids=[v["name"] for v in VECTORS["refused_trust_lists"]])
def test_refused_trust_list(case: dict[str, Any]) -> None:
    with pytest.raises(fastpath.TrustListError, match=case["refused_because"].replace("(", r"\(")):
        fastpath.TrustList.from_jwks(json.dumps(case["trust_list"]))


def test_the_vector_keys_load_as_sm2_keys(vector_trust: fastpath.TrustList) -> None:
    sm2 = [key for key in vector_trust.keys.values() if key.alg == -65537]
    assert len(sm2) == 3
    assert {key.user_id for key in sm2} == {b"1234567812345678", b"permits@CN-110000"}
    assert all(len(key.public_key) == 65 and key.public_key[0] == 4 for key in sm2)


def test_a_valid_sm2_vector_decodes_the_permit(twin: ModuleType, vector_trust: fastpath.TrustList) -> None:
    vector = VECTORS["qr"][0]
    verdict = twin.verify_qr(vector["text"], vector_trust, NOW)
    assert verdict.ok and verdict.permit is not None
    assert verdict.permit["pn"] == make_sm2_vectors.PERMIT["pn"]
    assert verdict.kid == make_sm2_vectors.Key("issuer A (default user id)").kid
