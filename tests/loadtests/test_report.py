"""The report's judgement from measured steps: the knee, the exit code, the refusal, the sizing.

The inputs are what a run writes (the plan, the generator processes' phase reports,
the monitor's samples), made here with known latencies and CPU so that every figure
the report derives can be checked against arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from loadtests import capacity, plan as plans, report
from loadtests.histogram import Histogram

T0 = 1_800_000_000.0
API_CPU_S_PER_REQUEST = 0.001
API_IDLE_CORES = 0.05  # per worker
REDIS_CPU_S_PER_REQUEST = 0.0001
REDIS_IDLE_CORES = 0.01
REDIS_OPS_PER_REQUEST = 4.0
WORKERS = 2


def make_plan(rates: tuple[float, ...] = (100, 200, 400)) -> dict[str, Any]:
    steps = plans.Steps(duration_s=6.0 * len(rates) / 3, rates=rates, settle_s=0.5, idle_s=2.0)
    return plans.build(["exit_entry"], steps, None, generators=1, bad_share=0.05, target="http://127.0.0.1:1",
                       requests_per_arrival={"exit_entry": 1.0}, day_mix_parts=[])


def phase_report(phase: dict[str, Any], latency_s: float, error_rate: float = 0.0,
                 generator_cpu: float = 0.1) -> dict[str, Any]:
    window = phase["end"] - phase["steady_from"]
    count = int(phase["rate"] * window)
    failures = round(count * error_rate)
    h = Histogram()
    for i in range(count):
        h.record(latency_s * (0.5 + i / count))  # spread up to 1.5x: p99 near 1.49x
    wall = phase["end"] - phase["start"]
    return {"worker": 0, "phase": phase["id"], "arrivals": count, "dropped": 0, "unfinished": 0,
            "max_in_flight": 3, "users": 0, "lag": Histogram().to_json(), "cpu_s": generator_cpu * wall,
            "wall_s": wall, "seconds": {},
            "requests": {"/v1/verify/qr [WP1 cold]": {
                "count": count, "hist": h.to_json(), "failures": failures,
                "errors": {"expected VALID, got BAD_SIGNATURE": failures} if failures else {}}}}


def make_samples(the_plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Counters that rise by the idle use plus a fixed cost per request at each phase's rate."""
    def rate_at(t: float) -> float:
        for ph in the_plan["phases"]:
            if ph["start"] <= t < ph["end"]:
                return ph["rate"]
        return 0.0

    samples, api, redis, commands, t = [], 0.0, 0.0, 0.0, -1.0
    dt = 0.25
    while t <= the_plan["total_s"] + 1:
        rps = rate_at(t)
        row: dict[str, Any] = {"t": T0 + t, "processes": {}}
        for w in range(WORKERS):
            row["processes"][f"api worker {100 + w}"] = {"role": "api worker", "pid": 100 + w, "cpu_s": api,
                                                         "rss": 80 * 2**20}
        row["redis"] = {"commands": commands, "used_memory": 5 * 2**20, "cpu_s": redis, "ops_per_s_instant": 0}
        samples.append(row)
        api += dt * (API_IDLE_CORES + rps * API_CPU_S_PER_REQUEST / WORKERS)
        redis += dt * (REDIS_IDLE_CORES + rps * REDIS_CPU_S_PER_REQUEST)
        commands += dt * rps * REDIS_OPS_PER_REQUEST
        t += dt
    return samples


def build(latencies: list[float], errors: list[float] | None = None, generator_cpu: list[float] | None = None,
          j: report.Judgement | None = None, a: capacity.Assumptions | None = None,
          rates: tuple[float, ...] = (100, 200, 400)) -> dict[str, Any]:
    the_plan = make_plan(rates)
    phases = the_plan["phases"]
    results = {"t0": T0, "complete": True, "phases": [
        phase_report(ph, latencies[i], (errors or [0.0] * 9)[i], (generator_cpu or [0.1] * 9)[i])
        for i, ph in enumerate(phases)]}
    return report.build(the_plan, results, make_samples(the_plan), j or report.Judgement(),
                        a or capacity.Assumptions(), {})


def test_every_step_met_the_slo_the_knee_is_the_top_step_and_not_reached() -> None:
    r = build([0.005, 0.006, 0.008])
    s = r["scenarios"]["exit_entry"]
    assert s["knee_step"] == 2 and s["knee_reached"] is False
    assert s["knee_rps"] == pytest.approx(400, rel=0.01)
    assert s["p99_ms_at_knee"] == pytest.approx(8 * 1.49, rel=0.03)
    assert [st["slo_met"] for st in s["steps"]] == [True, True, True]
    assert r["exit_code"] == report.EXIT_MET and r["verdict"].startswith("SLO met")


def test_the_knee_is_the_last_step_before_the_first_that_broke_the_slo() -> None:
    r = build([0.005, 0.1, 0.4])  # p99 ~ 7, 149, 596 ms against 250
    s = r["scenarios"]["exit_entry"]
    assert s["knee_step"] == 1 and s["knee_reached"] is True
    assert s["knee_offered_rps"] == 200
    assert r["exit_code"] == report.EXIT_MET
    # A stricter SLO moves the knee down; the same steps.
    strict = build([0.005, 0.1, 0.4], j=report.Judgement(slo_p99_ms=50))
    assert strict["scenarios"]["exit_entry"]["knee_step"] == 0


def test_a_lower_step_that_broke_the_slo_does_not_hide_a_higher_one_that_held() -> None:
    r = build([0.4, 0.005, 0.4, 0.005], rates=(100, 200, 400, 800))
    s = r["scenarios"]["exit_entry"]
    assert s["knee_step"] == 3 and s["knee_reached"] is False
    assert s["broken_below_knee"] == [0, 2]


def test_errors_above_a_tenth_of_a_percent_break_the_slo_whatever_the_latency() -> None:
    r = build([0.005, 0.005, 0.005], errors=[0.0, 0.0, 0.01])
    s = r["scenarios"]["exit_entry"]
    assert s["knee_step"] == 1 and s["knee_reached"] is True
    assert s["steps"][2]["errors"] == {"expected VALID, got BAD_SIGNATURE": 6}
    assert s["steps"][2]["error_rate"] == pytest.approx(0.01, rel=0.1)


def test_no_step_met_the_slo_exit_code_1_and_no_sizing() -> None:
    r = build([0.5, 0.6, 0.7])
    s = r["scenarios"]["exit_entry"]
    assert s["knee_rps"] is None and s["sizing"] is None and s["limited_by"] == "no step met the SLO"
    assert r["exit_code"] == report.EXIT_NOT_MET and "SLO NOT MET" in r["verdict"]


def test_a_knee_below_the_required_rate_fails() -> None:
    r = build([0.005, 0.005, 0.005], j=report.Judgement(slo_min_rps=1000))
    assert r["exit_code"] == report.EXIT_NOT_MET
    assert "knee below --slo-min-rps" in r["verdict"]


def test_a_generator_above_its_cpu_threshold_below_the_knee_refuses_the_run() -> None:
    r = build([0.005, 0.005, 0.4], generator_cpu=[0.1, 0.95, 0.1])
    s = r["scenarios"]["exit_entry"]
    assert s["generator_bound_steps"] == [1] and s["trusted"] is False
    assert s["steps"][1]["generator"]["bound"] is True
    assert r["exit_code"] == report.EXIT_REFUSED and r["verdict"].startswith("REFUSED")
    allowed = build([0.005, 0.005, 0.4], generator_cpu=[0.1, 0.95, 0.1],
                    j=report.Judgement(allow_generator_bound=True))
    assert allowed["exit_code"] == report.EXIT_MET
    assert allowed["scenarios"]["exit_entry"]["trusted"] is False  # still flagged


def test_a_generator_bound_step_above_the_first_broken_one_does_not_matter() -> None:
    r = build([0.005, 0.4, 0.6], generator_cpu=[0.1, 0.1, 0.99])
    assert r["scenarios"]["exit_entry"]["trusted"] is True
    assert r["exit_code"] == report.EXIT_MET


def test_costs_per_request_are_measured_above_the_idle_service() -> None:
    r = build([0.005, 0.006, 0.008])
    assert r["idle"]["api_worker_cores"] == pytest.approx(API_IDLE_CORES, rel=0.05)
    assert r["idle"]["redis_cores"] == pytest.approx(REDIS_IDLE_CORES, rel=0.05)
    top = r["scenarios"]["exit_entry"]["steps"][2]
    assert top["redis"]["ops_per_request"] == pytest.approx(REDIS_OPS_PER_REQUEST, rel=0.05)
    assert top["api"]["workers"] == WORKERS and top["api"]["worker_rss_mb_max"] == 80.0
    measured = r["scenarios"]["exit_entry"]["sizing"]["measured"]
    assert measured["api_cpu_s_per_request"] == pytest.approx(API_CPU_S_PER_REQUEST, rel=0.05)
    assert measured["redis_cpu_s_per_request"] == pytest.approx(REDIS_CPU_S_PER_REQUEST, rel=0.05)


def test_the_sizing_follows_from_the_costs_and_every_assumption() -> None:
    a = capacity.Assumptions(holders=10_000_000, scans_per_holder_per_day=2.0, peak_factor=10.0,
                             api_utilisation=0.6, min_api_workers=4, redis_utilisation=0.5)
    r = build([0.005, 0.006, 0.008], a=a)
    sizing = r["scenarios"]["exit_entry"]["sizing"]
    peak = 10_000_000 * 2.0 / 86_400 * 10.0
    assert sizing["peak_rps"] == pytest.approx(peak, rel=1e-3)
    m = sizing["measured"]
    assert sizing["api_workers"] == math.ceil(peak * m["api_cpu_s_per_request"] / (0.6 - m["api_worker_idle_cores"]))
    assert m["api_cpu_s_per_request"] == pytest.approx(API_CPU_S_PER_REQUEST, rel=0.02)
    assert m["api_worker_idle_cores"] == pytest.approx(API_IDLE_CORES, rel=0.02)
    redis_cores = m["redis_idle_cores"] + peak * m["redis_cpu_s_per_request"]
    assert sizing["redis_primaries"] == max(1, math.ceil(redis_cores / 0.5))
    assert sizing["redis_ops_per_s_at_peak"] == pytest.approx(peak * REDIS_OPS_PER_REQUEST, rel=0.06)
    assert sizing["redis_replicas"] == sizing["redis_primaries"] * a.replicas_per_primary
    assert sizing["assumptions"]["holders"] == 10_000_000
    # A small country: the availability minimum, not the CPU, sizes the API.
    small = build([0.005, 0.006, 0.008], a=capacity.Assumptions(holders=10_000))
    assert small["scenarios"]["exit_entry"]["sizing"]["api_workers"] == 4


def test_the_stress_case_is_sized_at_its_own_slo() -> None:
    a = capacity.Assumptions(stress_scans_per_s=50_000, stress_slo_p99_ms=50)
    r = build([0.005, 0.02, 0.04], a=a)  # p99 ~ 7, 30, 60 ms: at 50 ms the knee is step 1
    stress = r["stress"]
    assert stress["scenario"] == "exit_entry" and stress["knee_rps"] == pytest.approx(200, rel=0.01)
    assert stress["sizing"]["peak_rps"] == 50_000
    assert stress["sizing"]["redis_primaries"] > 1
    assert any("one hash slot" in note for note in stress["sizing"]["notes"])
    none = build([0.06, 0.07, 0.08], a=a)
    assert none["stress"]["sizing"] is None and "no step of exit_entry met" in none["stress"]["why"]


def test_capacity_resizes_a_report_under_other_assumptions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = build([0.005, 0.006, 0.008], a=capacity.Assumptions(holders=1_000_000))
    path = tmp_path / "report.json"
    path.write_text(json.dumps(r))
    assert capacity.main(["--report", str(path), "--holders", "500000000", "--json"]) == 0
    resized = json.loads(capsys.readouterr().out)["exit_entry"]
    assert resized["peak_rps"] == pytest.approx(r["scenarios"]["exit_entry"]["sizing"]["peak_rps"] * 500, rel=1e-3)
    assert resized["api_workers"] > r["scenarios"]["exit_entry"]["sizing"]["api_workers"]
    assert capacity.main(["--report", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "--holders" in printed and "exit_entry: peak" in printed


def test_the_report_files_a_planner_reads(tmp_path: Path) -> None:
    the_plan = make_plan()
    results = {"t0": T0, "complete": True, "phases": [phase_report(ph, 0.005) for ph in the_plan["phases"]]}
    written = report.write(tmp_path, the_plan, results, make_samples(the_plan), report.Judgement(),
                           capacity.Assumptions(), {"command": "python -m loadtests run <test>"})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["scenarios"]["exit_entry"]["knee_rps"] == written["scenarios"]["exit_entry"]["knee_rps"]
    for image in ("latency-exit_entry.png", "cpu.png", "redis.png"):
        assert image in written["plots"]
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "report.html").read_text()
    assert "latency-exit_entry.png" in page and "--stress-scans-per-s" in page and "Knees and nodes" in page
