"""Child processes that are stopped in order and reaped whole: no orphans.

Each child runs in its own session (so a terminal's Ctrl-C reaches only the parent,
which then stops the children in the order it chooses: API first, Redis last) and
gets SIGTERM if the parent dies without stopping it (Linux PR_SET_PDEATHSIG). A
stop sends SIGTERM to the child, waits, then SIGKILLs whatever is left of its
process group (uvicorn's workers, multiprocessing helpers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from verifier.lib.redis_server import _die_with_parent  # PR_SET_PDEATHSIG, the same as Redis's

__all__ = ["Child", "ChildFailed", "wait_until"]


class ChildFailed(RuntimeError):
    """A child exited when it should have kept running, or never became ready."""


def child_env(env: dict[str, str] | None) -> dict[str, str]:
    """``env`` (default: ours) with ``PYTHONSAFEPATH=1``: ``python -m verifier`` (and the
    workers uvicorn spawns with ``-c``) would otherwise put the working directory first on
    ``sys.path``, and run from a clone after ``pip install .`` they imported the source
    tree (the compiled extensions are built into site-packages, not there) and so ran the
    pure-Python twins. The interpreter's installed ``verifier`` is the one meant; an
    editable install and ``PYTHONPATH`` still work."""
    return {**(os.environ if env is None else env), "PYTHONSAFEPATH": "1"}


class Child:
    """One child process (``python -m verifier ...`` and the like) with its log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        """``time.monotonic()`` of the last start."""
        self.restarts = 0
        """How many times a supervisor started it again after it died (``verifier demo``)."""

    @classmethod
    def verifier(cls, name: str, args: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> "Child":
        """A ``verifier`` sub-command run by this same interpreter."""
        return cls(name, [sys.executable, "-m", "verifier", *args], log_dir / f"{name}.log", env)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "Child":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                env=child_env(self.env),
            )
        return self

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ChildFailed(f"{self.name} exited with code {self.process.returncode}; see {self.log_path}:\n{self.log_tail()}")

    def reap_dead(self, grace_s: float = 5.0) -> int | None:
        """After the child itself died: give what is left of its group (a Redis server that got
        SIGTERM from PR_SET_PDEATHSIG, uvicorn's workers) ``grace_s`` to finish, SIGTERM it, then
        ``stop()`` (SIGKILL). Returns the child's exit code."""
        process = self.process
        if process is None or process.poll() is None:
            return None
        code = process.returncode
        pgid = process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not _group_alive(pgid), timeout_s=grace_s, what=f"what is left of {self.name}")
        self.stop()
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL the whole group; returns the exit code."""
        process = self.process
        if process is None:
            return None
        pgid = process.pid  # start_new_session: the child leads its own process group
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group (the child itself if it ignored SIGTERM, workers
        # whose supervisor died) goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait(timeout=10)
        wait_until(lambda: not _group_alive(pgid), timeout_s=10, what=f"the processes of {self.name} to exit")
        return process.returncode


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in the group? A zombie is dead already."""
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split(" ", 3)[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    abort: Callable[[], None] | None = None,
) -> None:
    """Poll ``condition`` until true; ``abort`` may raise to give up early (a child died, Ctrl-C)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if abort is not None:
            abort()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 2xx; False when it does not answer or answers otherwise."""
    try:
        return httpx.get(url, timeout=timeout_s).is_success
    except httpx.HTTPError:
        return False
