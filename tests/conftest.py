"""Suite-wide pytest configuration: only the shared fixtures' registration lives here.

Fixtures of one capability belong in that capability's own ``tests/<folder>/conftest.py``.
"""

pytest_plugins = ["tests.support.redis_fixtures", "tests.support.log_privacy"]
