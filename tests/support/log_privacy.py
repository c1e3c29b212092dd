"""No codes, names or numbers of people in any log line the service writes during the test run.

A pytest plugin (registered in ``tests/conftest.py``): a handler on the root logger sees every
record the service's own loggers (``verifier.*``, ``fastpath``, ``uvicorn``, ``litestar``,
``loadtests``) emit in the test process, at whatever level a test runs them, and looks for the
shapes of the demo data's identifiers (``verifier.upstream.population``): a permit number
(``WP`` and 16 or more digits), a social security number (``9`` and 18 digits), a card number
(``S`` and 14 digits), a name (``SURNAME, GIVEN`` of the simulator's name lists) and a QR
code (``WP1:``/``ES1:`` and base45). A test during which one was logged fails, naming the line.
One regular expression per record, on records that are made anyway: cheap.

The processes the tests start (the demo, ``verifier serve``) write to files instead; their logs
are grepped for the whole simulated population by ``tests/run/test_run_demo_ops.py``.
``--no-log-privacy`` turns the check off (to see a failing test's other problems first).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from verifier.upstream.population import _NAMES

_SERVICE_LOGGERS = ("verifier", "fastpath", "uvicorn", "litestar", "loadtests")
_SURNAMES = sorted({s for surnames, _given in _NAMES.values() for s in surnames}, key=len, reverse=True)
_GIVEN = sorted({g for _surnames, given in _NAMES.values() for g in given}, key=len, reverse=True)
PERSONAL = re.compile(
    r"WP\d{16,}"  # permit number
    r"|(?<!\d)9\d{18}(?!\d)"  # social security number
    r"|(?<![A-Za-z0-9])S\d{14}(?!\d)"  # card number
    r"|\b(?:" + "|".join(map(re.escape, _SURNAMES)) + r"),? (?:" + "|".join(map(re.escape, _GIVEN)) + r")\b"  # name
    r"|\b(?:WP1|ES1):[0-9A-Z $%*+\-./:]{20,}"  # a QR code's text
)


class _Watch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(_SERVICE_LOGGERS):
            return
        try:
            text = record.getMessage()
        except Exception:  # a bad format is another test's business
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        hit = PERSONAL.search(text)
        if hit:
            self.found.append(f"{record.name} {record.levelname}: {hit.group(0)!r} in {text[:300]!r}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-log-privacy", action="store_true", default=False,
                     help="do not fail tests during which the service logged personal data")


_WATCH = _Watch()


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--no-log-privacy"):
        logging.getLogger().addHandler(_WATCH)


@pytest.fixture(autouse=True)
def _no_personal_data_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    before = len(_WATCH.found)
    yield
    found = _WATCH.found[before:]
    if found and not request.config.getoption("--no-log-privacy"):
        pytest.fail("the service logged personal data:\n" + "\n".join(found[:10]), pytrace=False)
