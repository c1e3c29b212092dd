"""`verifier serve` (uvicorn, 2 workers) stopped under load, and a worker killed: answers, refusals, audit.

SIGTERM: requests in flight finish, requests on kept-alive connections during the drain
are answered (``Connection: close``), new connections are refused, and every answered
verification has its audit record; each worker logs one shutdown line. ``kill -9`` of a
worker: the supervisor starts a replacement, which serves.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.api.conftest import PERMITS, World, wait_until
from tests.api.servers import Server
from tests.run.procs import descendants
from verifier.api.audit.log import AUDIT_STREAM

NEVER_HANGS_S = 10.0


def _audited(world: World, terminal_prefix: str) -> Counter[str]:
    """The audit records in the store whose terminal starts with ``terminal_prefix``, by terminal."""
    counts: Counter[str] = Counter()
    for _id, fields in world.redis_sync.xrange(AUDIT_STREAM):
        for record in orjson.loads(fields[b"r"]):
            terminal = record.get("terminal") or ""
            if terminal.startswith(terminal_prefix):
                counts[terminal] += 1
    return counts


def _workers(server: Server) -> set[int]:
    return {pid for pid, _ in descendants(server.process.pid)
            if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()}


class KeptAliveScanner(threading.Thread):
    """One client on one kept-alive connection, scanning until its server refuses it."""

    def __init__(self, server: Server, world: World, n: int, signalled: threading.Event) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=server.url, timeout=NEVER_HANGS_S,
                                 limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        self.terminal = f"DRAIN-{n}"
        self.body = {"qr": world.wp1(PERMITS["valid"]), "terminal": self.terminal}
        self.headers = world.headers("exit_entry")
        self.signalled = signalled
        self.signalled_at = 0.0
        self.answered = 0
        self.after_signal: list[tuple[int, str]] = []
        """(status, Connection header) of the answers to requests sent after the signal."""
        self.refused = False
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.refused and not self.errors:
            late = self.signalled.is_set()
            try:
                response = self.http.post("/v1/verify/qr", json=self.body, headers=self.headers)
            except httpx.ConnectError:
                self.refused = True  # a new connection, refused: the clean end
                break
            except httpx.HTTPError as exc:  # a reset, a connection closed without an answer, a hang
                self.errors.append(f"{type(exc).__name__}: {exc} at {time.monotonic() - self.signalled_at:.3f} s "
                                   f"after the signal, {len(self.after_signal)} answers after it before")
                break
            if response.status_code == 200:
                assert response.json()["result"] == "VALID"
                self.answered += 1
            if late:
                self.after_signal.append((response.status_code, response.headers.get("connection", "")))
        self.http.close()


def test_sigterm_drains_kept_alive_connections_and_audits_every_answer(world: World, tmp_path: Path) -> None:
    server = Server(world, 2, tmp_path / "serve.log", log_level="info")
    scanners: list[KeptAliveScanner] = []
    try:
        server.wait_ready()
        signalled = threading.Event()
        scanners = [KeptAliveScanner(server, world, n, signalled) for n in range(8)]
        for scanner in scanners:
            scanner.start()
        wait_until(lambda: all(s.answered >= 5 for s in scanners), timeout_s=30, what="every scanner answered")
        for scanner in scanners:
            scanner.signalled_at = time.monotonic()
        signalled.set()
        server.process.send_signal(signal.SIGTERM)  # the parent only, as an orchestrator does
        assert server.process.wait(timeout=60) == 0
        for scanner in scanners:
            scanner.join(timeout=NEVER_HANGS_S * 2)
            assert not scanner.is_alive()
        assert [s.errors for s in scanners if s.errors] == [], [(s.after_signal, s.errors) for s in scanners]
        assert all(s.refused for s in scanners)  # each ended on a refused new connection
        late = [answer for s in scanners for answer in s.after_signal]
        assert late, "no request was sent on an open connection after the signal"
        # answered (or, were the app gone, 503); once the worker had the signal, with Connection: close
        assert {status for status, _connection in late} <= {200, 503}, late
        assert any(connection.lower() == "close" for _status, connection in late), late
    finally:
        server.stop()
    answered = {s.terminal: s.answered for s in scanners}
    # Every answered verification has its audit record, once (the store of record was up throughout).
    assert dict(_audited(world, "DRAIN-")) == answered
    log = server.log_path.read_text()
    shutdown_lines = [line for line in log.splitlines() if "shutdown: " in line and "in flight at the signal" in line]
    assert len(shutdown_lines) == 2, log[-3000:]  # one per worker
    assert all(re.search(r"audit: \d+ records delivered to the store, 0 left", line) for line in shutdown_lines), \
        shutdown_lines
    print(f"\nSIGTERM under load: {sum(answered.values())} verifications answered and audited, "
          f"{len(late)} answered on open connections after the signal; " + " | ".join(
              line.split("shutdown: ", 1)[1] for line in shutdown_lines))


def test_a_killed_worker_is_replaced_and_the_replacement_serves(world: World, tmp_path: Path) -> None:
    server = Server(world, 2, tmp_path / "serve.log")
    http = httpx.Client(base_url=server.url, timeout=NEVER_HANGS_S, limits=httpx.Limits(max_keepalive_connections=0))
    try:
        server.wait_ready()
        workers = wait_until(lambda: len(w := _workers(server)) == 2 and w, timeout_s=30, what="two workers")
        code = world.wp1(PERMITS["valid"])

        def scan(terminal: str) -> str:
            response = http.post("/v1/verify/qr", json={"qr": code, "terminal": terminal},
                                 headers=world.headers("exit_entry"))
            assert response.status_code in (200, 503), response.text  # never a 500
            return response.json()["result"] if response.status_code == 200 else "503"  # type: ignore[no-any-return]

        assert {scan("KILL-before") for _ in range(20)} == {"VALID"}
        time.sleep(1.0)  # past the flush interval (0.25 s): nothing of these is only in memory
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(lambda: len(w := _workers(server)) == 2 and victim not in w and w, timeout_s=30,
                              what="a replacement worker")
        assert len(replaced - workers) == 1
        wait_until(lambda: all(scan("KILL-after") == "VALID" for _ in range(10)), timeout_s=30,
                   what="VALID from both workers")
        assert {scan("KILL-after") for _ in range(20)} == {"VALID"}
        # Answered at least 1 s before the kill: in the store (the loss window is the last 0.25 s).
        wait_until(lambda: _audited(world, "KILL-before")["KILL-before"] == 20, timeout_s=10,
                   what="the killed worker's records in the store")
        wait_until(lambda: "died (killed by SIGKILL); started a replacement" in server.log_path.read_text(),
                   timeout_s=10, what="the supervisor's line")
    finally:
        http.close()
        server.stop()
