"""The generator itself, a real Locust master and worker on loopback, against a slow real HTTP server.

The sink answers one request at a time after 100 ms: at most 10 answers a second.
Offered 20 a second, the open model still sends every arrival on schedule, and its
latency, timed from the intended send, shows the queue; the closed loop waits for its
answers and so sends at most what the server answers. Every bound asserted here
follows from the server's own minimum service time, not from how fast this machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests import plan as plans
from loadtests.histogram import Histogram
from loadtests.run import REPO, child_env, run_generators

pytestmark = [pytest.mark.slow]

SERVICE_S = 0.1
RATE = 20.0
STEP_S = 2.0


@pytest.fixture
def slow_sink(tmp_path: Path) -> Iterator[str]:
    port_file = tmp_path / "sink.port"
    sink = subprocess.Popen(
        [sys.executable, "-m", "loadtests.sink", "--port-file", str(port_file), "--serial",
         "--delay-ms", str(SERVICE_S * 1000)],
        cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert sink.poll() is None and time.monotonic() < deadline, "the sink did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def test_open_model_keeps_its_schedule_and_times_from_the_intended_send(tmp_path: Path, slow_sink: str) -> None:
    steps = plans.Steps(duration_s=STEP_S, steps=1, start_rps=RATE, settle_s=0.0, idle_s=0.0, pause_s=3.0)
    the_plan = plans.build(["probe"], steps, "probe", generators=1, target=slow_sink, arrivals="uniform",
                           bad_share=0.0, closed_pace=10.0, connections=50, max_in_flight=1000,
                           request_timeout_s=20.0, drain_s=21.0, seed=1)
    results = run_generators(the_plan, tmp_path)
    assert results["complete"] is True
    mode = {ph["id"]: ph["mode"] for ph in the_plan["phases"]}
    by_mode = {mode[r["phase"]]: r for r in results["phases"]}
    open_run, closed_run = by_mode["open"], by_mode["closed"]

    # Open: every arrival of the schedule went out, whatever the server did, and was answered.
    opened = open_run["requests"]["GET /health/live"]
    assert 38 <= open_run["arrivals"] <= 40
    assert opened["count"] == open_run["arrivals"] and opened["failures"] == 0
    latency = Histogram.from_json(opened["hist"])
    # Arrival k (at k/20 s) is answered no sooner than k x 0.1 s: it waited >= k x 0.05 s.
    assert latency.percentile_s(0.5) >= 0.8
    assert latency.max_s >= 1.8

    # Closed: each of the 2 users waits for its answer, so no more went out than were answered.
    closed = closed_run["requests"]["GET /health/live"]
    assert closed_run["users"] == 2
    assert closed["count"] <= STEP_S / SERVICE_S + closed_run["users"]
    assert closed["count"] < open_run["arrivals"]
    assert Histogram.from_json(closed["hist"]).min_s >= SERVICE_S * 0.98
    # Each phase reports the worker's own CPU over its wall time (the generator-bound check).
    assert all(r["cpu_s"] > 0 and r["wall_s"] >= STEP_S * 0.9 for r in results["phases"])


def test_the_ceiling_command_measures_the_generator_against_a_sink(tmp_path: Path) -> None:
    out = tmp_path / "ceiling"
    run = subprocess.run(
        [sys.executable, "-m", "loadtests", "ceiling", "--out", str(out), "--duration", "2", "--steps", "2",
         "--start-rps", "100"],
        cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert "generator ceiling with 1 process(es):" in run.stdout
    summary = json.loads((out / "ceiling.json").read_text())
    assert [s["rate_rps"] for s in summary["steps"]] == [100.0, 200.0]
    assert all(s["throughput_rps"] > 0 and s["error_rate"] == 0 for s in summary["steps"])
    # Exit 0 exactly when a step was kept, and then the ceiling is that step's answered rate.
    assert (run.returncode == 0) == (summary["ceiling_rps"] is not None)
