"""The interop tests share the issuing tests' fixtures: the twins (``c``, ``py``), a
deterministic issuer key, its trust list, a permit."""

from tests.issuing.conftest import issuer_key, permit, trust, trust_of, twin  # noqa: F401
