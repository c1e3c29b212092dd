"""The demo's supervisor on real processes that die: a line each, back-off, a limit, a new row after a good run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from verifier.run import demo as demo_module
from verifier.run.demo import DemoOptions, DemoStack
from verifier.run.processes import Child, ChildFailed


def _stack(tmp_path: Path, max_restarts: int, code: str) -> tuple[DemoStack, Child]:
    stack = DemoStack(DemoOptions(state_dir=tmp_path, max_restarts=max_restarts))
    child = Child("crasher", [sys.executable, "-c", code], tmp_path / "crasher.log")
    stack.children.append(child.start())
    return stack, child


def _supervise_until(stack: DemoStack, done: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        stack.supervise()
        time.sleep(0.02)


def test_a_child_that_keeps_dying_is_restarted_with_a_line_each_then_given_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo_module, "BACKOFF_S", 0.05)
    stack, child = _stack(tmp_path, 3, "import sys; sys.exit(3)")
    with pytest.raises(ChildFailed, match=r"crasher exited with code 3 and was restarted 3 time\(s\), 3 in a row"):
        _supervise_until(stack, lambda: False)
    lines = [line for line in capsys.readouterr().out.splitlines() if "crasher exited" in line]
    assert [line.split("(restart ")[1].split(",")[0] for line in lines] == ["1", "2", "3"]
    assert all("exited with code 3; restarting it in" in line for line in lines)
    # the back-off doubles: 0.05, 0.1, 0.2 s
    assert [line.split("restarting it in ")[1].split(" s")[0] for line in lines] == ["0.1", "0.1", "0.2"]
    assert child.restarts == 3 and not child.running


def test_a_child_that_stayed_up_starts_a_new_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo_module, "BACKOFF_S", 0.05)
    monkeypatch.setattr(demo_module, "STABLE_S", 0.2)
    # Up for 0.4 s (longer than STABLE_S) each time, then killed by a signal: never five in a row.
    stack, child = _stack(tmp_path, 1, "import os, signal, time; time.sleep(0.4); os.kill(os.getpid(), signal.SIGKILL)")
    _supervise_until(stack, lambda: child.restarts >= 3)
    out = capsys.readouterr().out
    assert child.restarts >= 3 and "exited with code -9 (SIGKILL)" in out and "1 of 1 in a row" in out
    stack.stop()
    assert not child.running
