"""A child of ``verifier demo`` imports the installed verifier, not the working directory's."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from verifier.run.processes import Child, child_env


def test_a_child_does_not_put_its_working_directory_on_sys_path(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A source tree in the working directory that shadows a module: a child must not see it.
    (tmp_path / "shadowed_probe_module.py").write_text("WHERE = 'the working directory'\n")
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "child.log"
    code = ("import sys\n"
            "try:\n    import shadowed_probe_module\n    print('imported from', shadowed_probe_module.WHERE)\n"
            "except ImportError:\n    print('not importable')\n"
            "print('first path', repr(sys.path[0]))\n")
    child = Child("probe", [sys.executable, "-c", code], log).start()
    assert child.process is not None
    deadline = time.monotonic() + 30
    while child.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.process.returncode == 0, log.read_text()
    out = log.read_text()
    assert "not importable" in out, out
    assert "first path ''" not in out, out


def test_child_env_keeps_what_it_is_given() -> None:
    assert child_env({"A": "1"}) == {"A": "1", "PYTHONSAFEPATH": "1"}
    assert child_env(None)["PATH"] == os.environ["PATH"]
