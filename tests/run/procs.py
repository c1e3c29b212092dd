"""Process-tree helpers for the run tests: who a command started, and whether it is all gone.

Read from /proc (Linux), keyed by pid and start time so that a reused pid never
passes for a survivor.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

Proc = tuple[int, int]
"""(pid, start time in clock ticks since boot)."""


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); field 4 ppid; field 22 starttime
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> set[Proc]:
    """Every live process below ``root`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(entry))
    found: set[Proc] = set()
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            stat = _stat(pid)
            if stat is not None and stat[0] not in ("Z", "X"):
                found.add((pid, stat[2]))
                todo.append(pid)
    return found


def alive(procs: set[Proc]) -> set[Proc]:
    """Those of ``procs`` still running (same pid and start time, not a zombie)."""
    out = set()
    for pid, started in procs:
        stat = _stat(pid)
        if stat is not None and stat[2] == started and stat[0] not in ("Z", "X"):
            out.add((pid, started))
    return out


def port_open(url_or_port: str | int) -> bool:
    port = url_or_port if isinstance(url_or_port, int) else int(str(url_or_port).rstrip("/").rsplit(":", 1)[1].split("/")[0])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def stop_tree(process: subprocess.Popen[bytes], procs: set[Proc]) -> None:
    """Last-resort cleanup after a failed test: nothing of ours may outlive it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    for pid, _ in alive(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
