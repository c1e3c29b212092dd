"""The fault trial's own parts: its arithmetic (what counts as a false VALID, a lost record, a recovery),
its report's table, and the fault proxy on real sockets. Fast: no service is started."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from verifier.lib.redis_server import free_port
from tests.faults import proxy as fault_proxy
from tests.faults.load import Answer, Window, audit_check, false_valids, stable_from, summary
from tests.faults.report import render
from tests.faults.stack import REPO, SEED, simulator_card


def answer(kind: str, sent: float, result: str = "", status: int = 200, terminal: str = "", done: float = 0.0,
           error: str = "") -> Answer:
    return Answer(kind, sent, done or sent + 0.01, status, result=result, terminal=terminal, error=error)


def test_a_valid_for_a_cancelled_code_is_false_wherever_it_falls() -> None:
    answers = [answer("wp1-cancelled", 1.0, "VALID"), answer("wp1-cancelled", 2.0, "PERMIT_CANCELLED")]
    assert false_valids(answers, []) == [answers[0]]


def test_a_valid_wholly_inside_a_window_of_unknown_status_is_false_and_one_straddling_its_end_is_not() -> None:
    window = [Window(10.0, 20.0, "Redis down")]
    inside = answer("wp1-valid", 12.0, "VALID")
    before = answer("wp1-valid", 9.99, "VALID", done=10.5)  # sent before the window opened
    straddling = answer("card-valid", 19.9, "VALID", done=20.2)  # answered after status was known again
    unavailable = answer("wp1-valid", 13.0, "STATUS_UNAVAILABLE")
    assert false_valids([inside, before, straddling, unavailable], window) == [inside]


def test_the_victims_code_must_not_be_valid_once_its_cancellation_is_in_the_index() -> None:
    early = answer("wp1-victim", 5.0, "VALID")
    late = answer("wp1-victim", 7.0, "VALID")
    refused = answer("wp1-victim", 7.5, "PERMIT_CANCELLED")
    assert false_valids([early, late, refused], [], victim_cancelled=6.0) == [late]
    assert false_valids([early, late, refused], []) == []  # not cancelled yet: VALID is its verdict


def test_recovery_is_the_first_valid_from_which_on_every_one_is_valid() -> None:
    answers = [answer("wp1-valid", t, r) for t, r in
               [(1, "STATUS_UNAVAILABLE"), (2, "VALID"), (3, "STATUS_UNAVAILABLE"), (4, "VALID"), (5, "VALID")]]
    assert stable_from(answers, 0.5) == 4
    assert stable_from(answers[:3], 0.5) is None  # it ends unavailable: no recovery


def test_an_answered_verification_without_its_record_is_lost_and_a_second_record_is_a_duplicate() -> None:
    answers = [answer("wp1-valid", 1, "VALID", terminal="r-1"), answer("card-valid", 2, "VALID", terminal="r-2"),
               answer("wp1-valid", 3, status=0, error="ReadError", terminal="r-3"),  # no answer: no record owed
               answer("permit-valid", 4, "found:active"), answer("permit-valid", 5, status=503)]
    records = [{"terminal": "r-1", "kind": "qr"}, {"terminal": "r-1", "kind": "qr"}, {"kind": "permit"}]
    check = audit_check(answers, records)
    assert [a.terminal for a in check["lost"]] == ["r-2"]
    assert check["duplicated"] == 1
    assert (check["lookups"], check["lookup_records"]) == (2, 1)  # the 503 of a look-up is audited too


def test_summary_tells_a_503_problem_document_from_another_5xx_and_counts_hangs() -> None:
    answers = [answer("wp1-valid", 1, status=503), answer("wp1-valid", 2, status=500),
               answer("wp1-valid", 3, status=0, error="ReadTimeout")]
    answers[0].problem = True
    figures = summary(answers)
    assert (figures["http_5xx"], figures["http_503"], figures["http_5xx_not_503_problem"]) == (2, 1, 1)
    assert figures["hangs"] == 1


def test_the_table_names_each_row_its_figures_and_its_failures() -> None:
    rows = [{"row": "a", "fault": "Redis `kill -9`", "requests": 10, "http_5xx": 3, "http_503": 3,
             "false_valid": 0, "lost_audit": 0, "recovery_s": 0.25, "notes": "slowest 0.1 s", "passed": True},
            {"row": "b", "fault": "worker", "requests": 5, "http_5xx": 0, "false_valid": 1, "lost_audit": 0,
             "lost_audit_within_documented_window": 2, "recovery_s": None, "passed": False,
             "failures": ["1 false VALID"]}]
    table = render({"rows": rows, "machine": {"cpus": 2, "load_average": [1.0]}, "written_at": "now"})
    lines = table.splitlines()
    assert lines[2] == "| Redis `kill -9` | 10 | 3 (3 × 503 problem) | 0 | 0 | 0.25 s | slowest 0.1 s |"
    assert "**(fails: 1 false VALID)**" in lines[3] and "0 (+2 in the documented crash window)" in lines[3]
    assert "| — |" in lines[3]  # no recovery measured


def test_the_report_renders_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text('{"rows": [{"row": "x", "fault": "f", "requests": 1, "http_5xx": 0, "false_valid": 0,'
                    ' "lost_audit": 0, "recovery_s": 1.5}], "machine": {}}')
    out = subprocess.run([sys.executable, "-m", "tests.faults.report", str(path)], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "| f | 1 | 0 | 0 | 0 | 1.50 s |  |" in out.stdout


def test_the_simulators_card_key_is_derived_as_the_simulator_derives_it() -> None:
    from verifier.upstream.simulator import Upstream

    upstream = Upstream.create(permits=20, seed=SEED)
    card_number = next(r.cn for r in upstream.records() if r.cn)
    challenge = bytes(range(32))
    assert simulator_card(SEED, card_number).sign_challenge(challenge) == \
        upstream.card(card_number).sign_challenge(challenge)


@pytest.fixture
def proxied_echo() -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """An echo server, and the fault proxy in front of it as a process: (proxy port, control port)."""
    echo = socket.create_server(("127.0.0.1", 0))
    echo_port = echo.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # the proxy resets its side too
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    listen, control = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.faults.proxy", "--listen", str(listen), "--target",
                                str(echo_port), "--control", str(control)], cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", control), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)
    yield listen, control, process
    process.kill()
    process.wait(10)
    echo.close()


def _round_trip(port: int) -> bytes | str:
    """What comes back for b"ping": the echo, b"" (closed), or "reset"."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"ping")
            return sock.recv(16)
    except ConnectionResetError:
        return "reset"


def test_the_proxy_passes_bytes_resets_connections_on_command_and_counts_them(proxied_echo) -> None:
    listen, control, _process = proxied_echo
    assert _round_trip(listen) == b"ping"
    with socket.create_connection(("127.0.0.1", listen), timeout=5) as open_before:
        open_before.sendall(b"a")
        assert open_before.recv(1) == b"a"
        assert fault_proxy.command(control, "mode reset") == "ok"
        try:  # the connection that was open is reset too
            open_before.sendall(b"b")
            after = open_before.recv(1)
        except ConnectionResetError:
            after = b""
        assert after == b""
    assert _round_trip(listen) in (b"", "reset")
    assert fault_proxy.command(control, "mode pass") == "ok"
    assert _round_trip(listen) == b"ping"
    stats = orjson.loads(fault_proxy.command(control, "stats"))
    assert stats["accepted"]["pass"] >= 2 and stats["accepted"]["reset"] >= 1
    assert [mode for _at, mode in stats["accept_times"]][-2:] == ["reset", "pass"]
    assert fault_proxy.command(control, "nonsense").startswith("error")
