"""The upstream failing under the sync job (issue 11): 5xx, slow answers, connection resets,
truncated bodies, the upstream killed; and an upstream restored to an older state.

Each fault: the sync job backs off and logs one line when it starts failing and one when it
recovers (not one per retry); ``/health/ready`` reports the growing lag; the API answers
from the index until the staleness bound, then STATUS_UNAVAILABLE; all comes back after.
The sync job runs in a thread, the API as a TestClient, the simulator on a real port (the
killed case: a real process, kill -9), a real Redis.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from verifier.api.auth.keys import add_api_key
from verifier.index.records import PermitRecord
from verifier.index.sync_status import read_sync_status_sync
from verifier.index.writer import IndexWriter

from tests.api.conftest import open_client, run_async
from tests.upstream.support import simulator

from .support import REPO, assert_index_equals_upstream, settings_for, sync_thread, wait_caught_up, wait_for

STALENESS_S = 2.0


class ResettingProxy:
    """A TCP proxy in front of the upstream; ``resetting = True`` answers every new
    connection with a TCP reset (SO_LINGER 0), as a failing load balancer would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.resetting = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.resetting:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            self._open.append(conn)
            threading.Thread(target=self._pipe_both, args=(conn,), daemon=True).start()

    def retarget(self, port: int) -> None:
        """Send new connections to another upstream, and cut the open ones."""
        self.target_port = port
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._open = []

    def _pipe_both(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            conn.close()
            return

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        back.start()
        pipe(conn, upstream)
        back.join(30)
        upstream.close()
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()
        self.retarget(self.target_port)  # cut what is still open (each pipe then closes its sockets)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def sync_log() -> Iterator[_Lines]:
    handler = _Lines()
    logger = logging.getLogger("verifier.sync")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def _api(redis_url: str, tmp_path: Any) -> tuple[Any, dict[str, str]]:
    from verifier.lib.settings import Settings

    settings = Settings(redis_url=redis_url, state_dir=tmp_path / "state", staleness_bound_s=STALENESS_S,
                        rate_limit_per_s=100_000.0, rate_limit_burst=100_000)
    _, token = run_async(redis_url, lambda r: add_api_key(r, "exit_entry", "fault tests"))
    return open_client(settings), {"Authorization": f"Bearer {token}"}


def _verify(api: Any, headers: dict[str, str], qr: str) -> dict[str, Any]:
    response = api.post("/v1/verify/qr", json={"qr": qr, "terminal": "T-1"}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _valid_code(upstream: Any, client: httpx.Client) -> str:
    for i in range(upstream.count):
        record = upstream.record_at(i)
        if record.status == "active" and record.vt > "2027-12-31":
            response = client.post("/issue/wp1", json={"pn": record.pn})
            if response.status_code == 200:
                return response.json()["qr"]  # type: ignore[no-any-return]
    raise AssertionError("no active permit to mint a code for")


def _ready(api: Any) -> tuple[int, dict[str, Any]]:
    response = api.get("/health/ready")
    return response.status_code, response.json()


def _goes_stale_and_comes_back(api: Any, headers: dict[str, str], qr: str, lines: _Lines, redis_sync: Any,
                               restore: Any) -> None:
    """What every fault must show, from the moment it is switched on."""
    # Before the bound: the index still answers, and the lag it reports grows.
    status, first = _ready(api)
    verdict = _verify(api, headers, qr)
    assert verdict["result"] in ("VALID", "STATUS_UNAVAILABLE")  # (the bound may pass already)
    wait_for(lambda: (s := read_sync_status_sync(redis_sync)) and s.state == "failing" and s.errors >= 3, 30,
             "the sync job to fail and retry")
    # (a freshness poll that a busy machine made late reads "status.unavailable" for a moment: wait for the stale state)
    lagging = wait_for(lambda: (r := _ready(api))[0] == 503 and r[1]["checks"]["index"] == "status.index_stale" and r,
                       30, "readiness to say the index is stale")
    assert lagging[1]["checks"]["index"] == "status.index_stale"
    assert lagging[1]["lag_s"] >= STALENESS_S
    if first["lag_s"] is not None:
        assert lagging[1]["lag_s"] > first["lag_s"]
    stale = _verify(api, headers, qr)
    assert stale["result"] == "STATUS_UNAVAILABLE"
    if stale["reasons"] != ["status.index_stale"]:  # the same moment of a late poll: never VALID, then stale
        assert stale["reasons"] == ["status.unavailable"], stale
        stale = wait_for(lambda: (v := _verify(api, headers, qr))["reasons"] == ["status.index_stale"] and v, 10,
                         "the verdict to say the index is stale")
        assert stale["result"] == "STATUS_UNAVAILABLE"
    retries = read_sync_status_sync(redis_sync).errors
    failing_lines = [line for line in lines.lines if line.startswith("sync: failing")]
    assert len(failing_lines) == 1, lines.lines  # one line for the state change, not one per retry
    assert retries >= 3
    restore()
    wait_for(lambda: _ready(api)[0] == 200, 60, "readiness to come back")
    assert _verify(api, headers, qr)["result"] == "VALID"
    assert any(line.startswith("sync: recovered after") for line in lines.lines), lines.lines


@pytest.mark.parametrize("fault", ["5xx", "slow", "truncated", "reset"])
def test_an_upstream_fault_backs_off_reports_the_lag_and_goes_unavailable_after_the_bound(
        fault: str, redis_url: str, redis_sync: Any, tmp_path: Any) -> None:
    with simulator(permits=1500, seed=51) as (upstream, server, client):
        proxy = ResettingProxy(int(server.url.rsplit(":", 1)[1]))
        # A read timeout below the simulator's 5 s delay: a slow upstream is a failing one.
        settings = settings_for(redis_url, proxy.url)
        api, headers = None, {}
        try:
            with sync_log() as lines, sync_thread(settings) as job:
                job.upstream._http.timeout = httpx.Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)
                job.upstream.retries = 1
                wait_caught_up(upstream, redis_sync)
                api, headers = _api(redis_url, tmp_path)
                qr = _valid_code(upstream, client)
                assert _verify(api, headers, qr)["result"] == "VALID"
                switches = {
                    "5xx": ({"error_rate": 1.0}, {"error_rate": 0.0}),
                    "slow": ({"slow_ms": 5000}, {"slow_ms": 0}),
                    "truncated": ({"truncate_rate": 1.0}, {"truncate_rate": 0.0}),
                }
                if fault == "reset":
                    proxy.resetting = True
                    proxy.retarget(proxy.target_port)  # the kept-alive connection too
                    restore = lambda: setattr(proxy, "resetting", False)  # noqa: E731
                else:
                    on, off = switches[fault]
                    client.post("/admin/faults", json=on).raise_for_status()
                    restore = lambda: client.post("/admin/faults", json=off).raise_for_status()  # noqa: E731
                upstream.random_events(50)  # changes the index cannot get while the fault lasts
                _goes_stale_and_comes_back(api, headers, qr, lines, redis_sync, restore)
                wait_caught_up(upstream, redis_sync)
                assert_index_equals_upstream(upstream, redis_sync)
        finally:
            if api is not None:
                api.__exit__(None, None, None)
            proxy.close()


def _upstream_process(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "verifier", "upstream", "--port", str(port), "--permits", "1500", "--seed", "52"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _answers(port), 60, "the upstream process to answer")
    return process


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/admin/state", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_upstream_killed_and_restarted(redis_url: str, redis_sync: Any, tmp_path: Any) -> None:
    """kill -9 of the upstream process: connection refused until it is back (a new feed: the
    sync job resyncs; nothing changed, so no regression)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    process = _upstream_process(port)
    api = None
    try:
        with sync_log() as lines, sync_thread(settings_for(redis_url, f"http://127.0.0.1:{port}")) as job:
            job.upstream.retries = 1
            wait_for(lambda: IndexWriter(redis_sync).state().ready, 60, "the first load")
            api, headers = _api(redis_url, tmp_path)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                qr = client.post("/issue/wp1", json={"pn": _first_active(client)}).json()["qr"]
            assert _verify(api, headers, qr)["result"] == "VALID"
            process.kill()
            process.wait(10)

            def restart() -> None:
                nonlocal process
                process = _upstream_process(port)

            _goes_stale_and_comes_back(api, headers, qr, lines, redis_sync, restart)
            assert any("full resync: the upstream feed was reset" in line or "(410;" in line for line in lines.lines)
            assert not any("REGRESSION" in line for line in lines.lines)
    finally:
        if api is not None:
            api.__exit__(None, None, None)
        process.kill()
        process.wait(10)


def _first_active(client: httpx.Client) -> str:
    import datetime as dt

    from verifier.upstream.population import Population

    population = Population(52, 1500, dt.date.today())
    for i in range(1500):
        response = client.get(f"/permits/{population.record(i).pn}")
        if response.status_code != 200:
            continue
        record = msgspec.json.decode(response.content, type=PermitRecord)
        if record.status == "active" and record.vt > "2027-12-31":
            return record.pn
    raise AssertionError("no active permit")


def test_an_upstream_restored_to_an_older_state_is_held_until_the_operator_accepts_it(
        redis_url: str, redis_sync: Any, tmp_path: Any) -> None:
    """The upstream comes back from a backup (same seed, the events since lost: versions go
    back). The sync job does not switch that in by itself: it alerts (log line, metric,
    /v1/admin/sync) and waits; `verifier index accept-regression` lets it through, and a
    code minted from a lost version then answers SUPERSEDED (upstream_regressed), not
    STATUS_UNAVAILABLE (index_behind) for good."""
    with simulator(permits=1500, seed=61) as (newer, newer_server, newer_client), \
            simulator(permits=1500, seed=61) as (older, older_server, _older_client):
        proxy = ResettingProxy(int(newer_server.url.rsplit(":", 1)[1]))
        api = None
        try:
            with sync_log() as lines, sync_thread(settings_for(redis_url, proxy.url)):
                newer.random_events(400)
                wait_caught_up(newer, redis_sync)
                api, headers = _api(redis_url, tmp_path)
                _, admin = run_async(redis_url, lambda r: add_api_key(r, "admin", "fault tests admin"))
                lost = next(newer.record_at(i) for i in range(1500)
                            if newer.record_at(i).v > older.record_at(i).v and newer.record_at(i).status == "active"
                            and newer.record_at(i).vt > "2027-12-31" and older.record_at(i).status == "active")
                qr = newer_client.post("/issue/wp1", json={"pn": lost.pn}).json()["qr"]
                assert _verify(api, headers, qr)["result"] == "VALID"
                generation = IndexWriter(redis_sync).pointer().generation

                proxy.retarget(int(older_server.url.rsplit(":", 1)[1]))  # the restore
                status = wait_for(lambda: (s := read_sync_status_sync(redis_sync)) and s.state == "regressed" and s,
                                  60, "the sync job to find the regression")
                assert status.regression.permits > 0 and status.regression.accepted_at is None
                assert IndexWriter(redis_sync).pointer().generation == generation  # held back
                assert sum("UPSTREAM REGRESSION" in line for line in lines.lines) == 1
                metrics = api.get("/metrics").text
                assert f"pv_sync_upstream_regression {float(status.regression.permits)}" in metrics
                overview = api.get("/v1/admin/sync", headers={"Authorization": f"Bearer {admin}"}).json()
                assert overview["sync"]["regression"]["permits"] == status.regression.permits

                accepted = subprocess.run(
                    [sys.executable, "-m", "verifier", "index", "accept-regression", "--redis", redis_url],
                    cwd=REPO, capture_output=True, text=True, timeout=60)
                assert accepted.returncode == 0, accepted.stderr
                assert f"{status.regression.permits} permits go back" in accepted.stdout
                wait_caught_up(older, redis_sync)
                assert_index_equals_upstream(older, redis_sync)
                verdict = _verify(api, headers, qr)
                assert verdict["result"] == "SUPERSEDED" and verdict["reasons"] == ["status.upstream_regressed"]
                done = read_sync_status_sync(redis_sync)
                assert done.regression.accepted_at is not None and done.state == "following"
                assert "pv_sync_upstream_regression 0.0" in api.get("/metrics").text
                again = subprocess.run(
                    [sys.executable, "-m", "verifier", "index", "accept-regression", "--redis", redis_url],
                    cwd=REPO, capture_output=True, text=True, timeout=60)
                assert again.returncode == 1  # nothing waits any more
        finally:
            if api is not None:
                api.__exit__(None, None, None)
            proxy.close()
