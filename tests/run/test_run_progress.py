"""Progress bars: drawn on a terminal (a pseudo-terminal here, from the ``pty`` module), or with
``--progress``; never on a pipe, in JSON log mode or on CI.

The long commands run for real against a real Redis and the upstream simulator: the full
resync of ``verifier sync``, ``verifier index check``, ``verifier audit export`` and the
first build of ``verifier status-lists run``; the load-test tools use the same bar
(:class:`verifier.lib.progress.Bar`), checked on a pseudo-terminal in-process.
"""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from verifier.lib import progress
from verifier.upstream.server import UpstreamServer
from verifier.upstream.simulator import Upstream
from tests.run.conftest import REPO, child_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAR = "━"  # rich's bar glyph


def _env(**more: str) -> dict[str, str]:
    env = child_env()
    for name in ("CI", "VERIFIER_PROGRESS", "VERIFIER_LOG_FORMAT"):
        env.pop(name, None)
    env["COLUMNS"] = "120"
    env.update(more)
    return env


def run_on_terminal(argv: list[str], *, until: str | None = None, timeout_s: float = 60.0,
                    env: dict[str, str] | None = None) -> tuple[int | None, str, bytes]:
    """Run ``verifier ARGV`` with stderr on a pseudo-terminal (stdout a pipe); return (exit code, what the
    terminal showed, stdout). ``until``: stop it (SIGTERM) once the terminal showed that, and a moment more."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "verifier", *argv], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=slave, cwd=REPO, env=env or _env())
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout_s
    seen_at = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk and process.poll() is not None:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
            if until is not None and seen_at is None and until.encode() in shown:
                seen_at = time.monotonic()
            if seen_at is not None and time.monotonic() - seen_at > 1.0:
                process.send_signal(signal.SIGTERM)
                break
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(master)
    return process.returncode, shown.decode(errors="replace"), out


def run_on_pipe(argv: list[str], *, until: str | None = None, timeout_s: float = 60.0,
                env: dict[str, str] | None = None) -> tuple[int | None, str, bytes]:
    """The same with stderr on a pipe."""
    process = subprocess.Popen([sys.executable, "-m", "verifier", *argv], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env or _env())
    assert process.stderr is not None
    shown = b""
    if until is not None:
        deadline = time.monotonic() + timeout_s
        os.set_blocking(process.stderr.fileno(), False)
        while until.encode() not in shown and time.monotonic() < deadline and process.poll() is None:
            select.select([process.stderr], [], [], 0.2)
            shown += process.stderr.read() or b""
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=timeout_s)
    return process.returncode, (shown + (err or b"")).decode(errors="replace"), out


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with UpstreamServer(Upstream.create(permits=3000, seed=5)) as server:
        yield server.url


@pytest.fixture
def synced(redis_url: str, upstream: str) -> str:
    """The index loaded by a sync job on a pipe (no bar: its log lines say how the resync went)."""
    code, shown, _ = run_on_pipe(["sync", "--redis", redis_url, "--upstream", upstream], until="resync done")
    assert "resync done" in shown and BAR not in shown and "\r" not in shown, shown[-2000:]
    assert "resync: 3000 records in" in shown  # the progress, as log lines
    return redis_url


def test_the_resync_draws_a_bar_on_a_terminal(redis_url: str, upstream: str) -> None:
    _code, shown, _ = run_on_terminal(["sync", "--redis", redis_url, "--upstream", upstream], until="resync done")
    assert "resync" in shown and BAR in shown and "3000/3000" in shown, shown[-2000:]


def test_the_resync_on_a_pipe_logs_lines_and_draws_no_bar(synced: str) -> None:
    pass  # the fixture's own assertions: no bar, no carriage return, the log lines


def test_the_index_check_draws_its_bars_on_a_terminal_only(synced: str, upstream: str) -> None:
    argv = ["index", "check", "--redis", synced, "--upstream", upstream]
    code, shown, out = run_on_terminal(argv)
    assert code == 0 and b"index check: identical" in out
    assert "index check: reading the upstream" in shown and "index check: walking the index" in shown
    assert BAR in shown and "3000/3000" in shown
    code, shown, out = run_on_pipe(argv)
    assert code == 0 and b"identical" in out and BAR not in shown and "walking" not in shown
    # forced on a pipe; and off in JSON log mode and on CI, even on a terminal and even when asked for
    code, shown, _ = run_on_pipe([*argv, "--progress"])
    assert code == 0 and BAR in shown
    for env in (_env(VERIFIER_LOG_FORMAT="json"), _env(CI="true")):
        code, shown, out = run_on_terminal([*argv, "--progress"], env=env)
        assert code == 0 and b"identical" in out and BAR not in shown, shown


def test_the_audit_export_draws_a_bar_on_a_terminal_only(redis_sync: Any, redis_url: str) -> None:
    now_ms = int(time.time() * 1000)
    for i in range(50):
        record = {"t": now_ms - 60_000 + i, "key": "k1", "role": "exit_entry", "terminal": "T-1", "kind": "qr",
                  "profile": "WP1", "pn": "", "result": "VALID"}
        redis_sync.xadd("pv:audit", {"r": orjson.dumps([record])}, id=f"{now_ms - 60_000 + i}-0")
    argv = ["audit", "export", "--since", str(now_ms // 1000 - 120), "--store", redis_url]
    code, shown, out = run_on_terminal(argv)
    assert code == 0 and len(out.splitlines()) == 50
    assert "audit export" in shown and BAR in shown and "exported 50 audit records" in shown
    code, shown, out = run_on_pipe(argv)
    assert code == 0 and len(out.splitlines()) == 50 and BAR not in shown


def test_the_status_list_build_draws_a_bar_on_a_terminal_only(synced: str) -> None:
    argv = ["status-lists", "run", "--redis", synced]
    _code, shown, _ = run_on_terminal(argv, until="status lists: built from")
    assert "status lists: build" in shown and BAR in shown and "3000/3000" in shown, shown[-2000:]
    _code, shown, _ = run_on_pipe(argv, until="status lists: built from")
    assert "built from 3000 records" in shown and BAR not in shown


def test_the_bar_of_the_load_test_tools_on_a_terminal_and_elsewhere() -> None:
    progress.configure_progress("auto")
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as terminal:
            bar = progress.Bar("load-test data", 200, unit="rows", stream=terminal)
            for _ in range(200):
                bar.advance()
            bar.finish()
        shown = b""
        while select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 65536)
    finally:
        os.close(slave)
        os.close(master)
    assert bar.drawn and "load-test data" in shown.decode() and "200/200" in shown.decode()
    plain = io.StringIO()
    assert not progress.Bar("load-test data", 200, stream=plain).drawn
    progress.configure_progress("auto", "json")
    try:
        assert not progress.bar_enabled(_Terminal())
    finally:
        progress.configure_progress("auto")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True
