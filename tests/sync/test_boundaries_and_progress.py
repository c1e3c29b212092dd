"""Who may import whom (DESIGN "Which part may use which"), and the resync progress display."""

from __future__ import annotations

import ast
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from verifier.lib.progress import configure_progress
from verifier.sync.progress import Progress

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_REQUEST_PATH = ("verifier.upstream", "verifier.sync", "verifier.run")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    offenders = {str(f.relative_to(REPO)): sorted(n for n in _imports(f) if n.startswith(forbidden)) for f in files}
    return {f: names for f, names in offenders.items() if names}


def test_the_api_and_the_index_never_import_the_simulator_or_the_sync_job() -> None:
    # their CLI commands included: ``serve``/``demo`` are registered by verifier.run, ``index check`` by verifier.sync
    files = [*sorted((REPO / "verifier" / "api").rglob("*.py")), *sorted((REPO / "verifier" / "index").glob("*.py"))]
    assert len(files) > 10
    assert _offenders(files, FORBIDDEN_IN_REQUEST_PATH) == {}


def test_the_sync_job_never_imports_the_simulator() -> None:
    # the upstream's wire contract is verifier.lib.upstream_wire, shared with the simulator
    files = [*sorted((REPO / "verifier" / "sync").glob("*.py")), *sorted((REPO / "verifier" / "lib").glob("*.py"))]
    assert len(files) > 10
    assert _offenders(files, ("verifier.upstream", "verifier.run", "verifier.api")) == {}


def test_importing_the_index_loads_neither_the_sync_job_nor_the_simulator() -> None:
    code = (
        "import sys, verifier.index, verifier.index.reader, verifier.index.sync_status, verifier.index.trust_store\n"
        f"print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN_IN_REQUEST_PATH!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal() -> None:
    configure_progress("auto")  # as `verifier sync` does with the settings (a CLI test may have left it off)
    screen = _Terminal()
    progress = Progress(1000, "resync", stream=screen)
    assert progress.tty
    progress.update(500)
    progress.finish()
    text = screen.getvalue()
    assert "resync" in text and "━" in text and "500/1000" in text  # rich's bar, as it stopped
    assert "\n" in text  # it ends its line: what comes next starts on a line of its own


def test_progress_logs_lines_elsewhere(caplog: pytest.LogCaptureFixture) -> None:
    plain = io.StringIO()
    progress = Progress(1000, "resync", stream=plain, log_every_s=0.0)
    with caplog.at_level(logging.INFO, logger="verifier.sync"):
        progress.update(250)
        progress.finish()
    assert plain.getvalue() == ""  # no bar, no carriage returns in a log file
    messages = [r.getMessage() for r in caplog.records]
    assert any("resync: 250/1000 records (25%)" in m for m in messages)
    assert any(m.startswith("resync: 250 records in") for m in messages)
