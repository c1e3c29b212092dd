"""Fixtures of the fault trial: the stack of processes, shared by the rows of a module, healed between them.

The report of the run (every row's figures) is written when the session ends, to
``$FAULTS_REPORT`` or ``.state/faults/report.json`` under the repository (ignored by git;
not pytest's temporary folder, which other runs on a shared machine clean away), and
its path is printed in the summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import report
from tests.faults.stack import LONG, FaultStack

PERMITS = 20_000 if LONG else 2000


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("faults"), permits=PERMITS)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(fault_stack: FaultStack) -> FaultStack:
    """The shared stack, whole again: whatever the previous row broke has been brought back."""
    fault_stack.heal()
    return fault_stack


def _report_path(config: pytest.Config) -> Path:
    if os.environ.get("FAULTS_REPORT"):
        return Path(os.environ["FAULTS_REPORT"])
    return Path(config.rootpath) / ".state" / "faults" / "report.json"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if report.ROWS:
        session.config._faults_report = report.write(_report_path(session.config))  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    path = getattr(config, "_faults_report", None)
    if path is not None:
        terminalreporter.write_line(f"fault trial report: {path}  (README table: python -m tests.faults.report {path})")
