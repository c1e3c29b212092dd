"""Fixtures of the issuing tests: a deterministic issuer key, its trust list, a
permit, and the two fastpath twins (ids ``c`` and ``py``) that judge what we mint."""

from __future__ import annotations

import types
from collections.abc import Callable

import orjson
import pytest

import fastpath
from fastpath._compat import NO_EXTENSIONS
from verifier.issuing import IssuerKey, KeyRing
from verifier.issuing.keys import trust_list
from tests.support.twins import load_twin

# 2026-01-01T00:00:00Z, the time of the public vectors
NOW = 1767225600
ISSUER = "CN-310000"


# With FASTPATH_NO_EXTENSIONS the compiled twin is not wanted: only ``py`` runs.
TWINS = ("py",) if NO_EXTENSIONS else ("c", "py")


@pytest.fixture(params=TWINS, ids=TWINS)
def twin(request: pytest.FixtureRequest) -> types.ModuleType:
    """A fastpath twin module. The ``c`` case fails (never skips) when the compiled
    twin did not build: a broken build must not quietly test Python twice."""
    return load_twin(f"fastpath._verify_{request.param}")


@pytest.fixture
def issuer_key() -> IssuerKey:
    return IssuerKey.from_seed(bytes(range(32)), [ISSUER, "CN-110000"], created=NOW - 86400)


@pytest.fixture
def ring(issuer_key: IssuerKey) -> KeyRing:
    return KeyRing([issuer_key])


def _trust_of(*keys_or_rings: IssuerKey | KeyRing) -> fastpath.TrustList:
    """The fastpath TrustList for issuer keys (or KeyRings), through the JWK Set we write."""
    keys: list[IssuerKey] = []
    for item in keys_or_rings:
        keys.extend(item.keys if isinstance(item, KeyRing) else [item])
    return fastpath.TrustList.from_jwks(orjson.dumps(trust_list(keys)))


@pytest.fixture
def trust_of() -> Callable[..., fastpath.TrustList]:
    return _trust_of


@pytest.fixture
def trust(issuer_key: IssuerKey) -> fastpath.TrustList:
    return _trust_of(issuer_key)


@pytest.fixture
def permit() -> dict[str, object]:
    return {
        "pn": "WP3100002025000042",
        "n": "SILVA, JOAO",
        "nat": "BRA",
        "dob": "1988-02-29",
        "cat": "B",
        "emp": "91310000MA1FL2AB3C",
        "vf": "2025-03-01",
        "vt": "2027-02-28",
        "v": 3,
        "ssn": "310000198802290011",
        "cn": "S31000012345678",
    }
