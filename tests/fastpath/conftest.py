"""Fixtures of the fastpath suite: one suite, run against both twins (ids ``c`` and ``py``)."""

from __future__ import annotations

from types import ModuleType

import pytest

import fastpath

from tests.support import twins as support_twins
from tests.support.twins import TWINS

from . import craft


def load_twin(name: str) -> ModuleType:
    return support_twins.load_twin(f"fastpath._verify_{name}")


@pytest.fixture(params=TWINS, ids=TWINS)
def twin(request: pytest.FixtureRequest) -> ModuleType:
    """The module of one twin: ``verify_qr``, ``verify_card_certificate``, ``check_card_signature``, ``verify_card``."""
    return load_twin(request.param)


@pytest.fixture
def py_twin() -> ModuleType:
    return load_twin("py")


@pytest.fixture
def c_twin() -> ModuleType:
    return load_twin("c")


@pytest.fixture
def trust() -> fastpath.TrustList:
    """The test trust list, fresh for each test (its verdict cache starts empty)."""
    return fastpath.TrustList.from_jwks(craft.trust_list_json())
