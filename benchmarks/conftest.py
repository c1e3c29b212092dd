"""Shared fixtures of the benchmarks: an issuer key made for the run, its trust
list, and real signed codes minted with the project's issuing module.

No key is stored: each run generates its own. Codes are minted for the
current time, because the ``cwt`` anchor checks ``exp`` against the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

import fastpath
from verifier.issuing.keys import IssuerKey, trust_list
from verifier.issuing.mint import mint_wp1

# A permit whose WP1 code is ~400 characters, the size DESIGN.md's anchors were measured on.
PERMIT: dict[str, Any] = {
    "pn": "WP3100002025000123",
    "n": "DOE, JANE ELIZABETH",
    "nat": "CAN",
    "dob": "1988-02-29",
    "cat": "B",
    "emp": "91310000MA1FL0AB2C",
    "vf": "2025-03-01",
    "vt": "2027-02-28",
    "v": 3,
    "ssn": "310000198802290021",
    "cn": "S31000012345678",
}
BATCH_SIZE = 2000


@dataclass(frozen=True)
class Issuing:
    key: IssuerKey
    jwks: dict[str, Any]
    now: int

    def trust(self) -> fastpath.TrustList:
        """A fresh trust list (with an empty verdict cache)."""
        import json

        return fastpath.TrustList.from_jwks(json.dumps(self.jwks))

    def wp1(self, permit: dict[str, Any] = PERMIT) -> str:
        # Valid until the end of the permit's vt day (2027) from a minute ago.
        return mint_wp1(self.key, permit, iat=self.now - 60)


@pytest.fixture(scope="session")
def issuing() -> Issuing:
    key = IssuerKey.generate(["CN-310000"])
    return Issuing(key, trust_list([key]), int(time.time()))


@pytest.fixture(scope="session")
def wp1_text(issuing: Issuing) -> str:
    return issuing.wp1()


@pytest.fixture(scope="session")
def sm2_issuing() -> Issuing:
    """An SM2-with-SM3 issuer (WIRE-FORMAT 9), its trust list; the same permit's codes."""
    key = IssuerKey.generate(["CN-310000"], alg="SM2-SM3")
    return Issuing(key, trust_list([key]), int(time.time()))


@pytest.fixture(scope="session")
def sm2_text(sm2_issuing: Issuing) -> str:
    return sm2_issuing.wp1()


@pytest.fixture(scope="session")
def batch_texts(issuing: Issuing) -> list[str]:
    """BATCH_SIZE different codes (one permit number each)."""
    return [issuing.wp1({**PERMIT, "pn": f"WP31000020250{i:05d}", "v": i % 7})
            for i in range(BATCH_SIZE)]
