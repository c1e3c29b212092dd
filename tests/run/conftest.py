"""Fixtures of the run tests: ``verifier demo`` as a real subprocess.

``start_demo(tmp_path, *args)`` runs ``python -m verifier demo --port 0 --info FILE``
with its state in ``tmp_path``, waits for the info file and returns a
:class:`RunningDemo`; whatever a test leaves running is killed at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.run.procs import Proc, descendants, stop_tree, wait_for

REPO = Path(__file__).resolve().parents[2]
DEMO_READY_TIMEOUT_S = 240.0


@dataclass
class RunningDemo:
    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    info_file: Path
    output: Path
    tree: set[Proc]
    """Every process below the demo once it was ready."""

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.info['keys'][role]}"}

    def interrupt(self, sig: int = signal.SIGINT, timeout_s: float = 90.0) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)

    def output_text(self) -> str:
        return self.output.read_text(errors="replace")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)  # the demo starts its own server
    env.pop("UPSTREAM_URL", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def start_demo() -> Iterator[Callable[..., RunningDemo]]:
    started: list[RunningDemo] = []
    pending: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(tmp_path: Path, *args: str) -> RunningDemo:
        info_file = tmp_path / "demo-info.json"
        output = tmp_path / "demo-output.txt"
        with open(output, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "verifier", "demo", "--port", "0", "--info", str(info_file),
                 "--state-dir", str(tmp_path / "state"), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=child_env(),
            )
        pending.append((process, output))
        try:
            wait_for(info_file.exists, DEMO_READY_TIMEOUT_S, "the demo's info file", process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- demo output:\n{output.read_text(errors='replace')[-5000:]}") from None
        demo = RunningDemo(process, json.loads(info_file.read_text()), info_file, output, descendants(process.pid))
        started.append(demo)
        return demo

    yield start
    for process, _ in pending:
        stop_tree(process, set().union(*(d.tree for d in started if d.process is process)) or descendants(process.pid))
