"""Loading one twin (compiled ``c`` or pure-Python ``py``) of a module pair."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

TWINS = ("c", "py")


def load_twin(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``fastpath._verify_c``). A missing compiled build fails the
    test, it never skips it: a broken build must not quietly test Python twice."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"the twin {module} did not import: {exc}")
