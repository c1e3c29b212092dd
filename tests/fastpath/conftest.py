"""Fixtures of the fastpath suite: one suite, run against both twins (ids ``c`` and ``py``)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import fastpath

from . import craft

TWINS = ("c", "py")


def load_twin(name: str) -> ModuleType:
    # The compiled twin must be there: a missing build fails the c tests, it never skips them.
    try:
        return importlib.import_module(f"fastpath._verify_{name}")
    except ImportError as exc:
        pytest.fail(f"the {name} twin did not import: {exc}")


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
