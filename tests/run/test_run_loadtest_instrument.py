"""``python -m loadtests run`` against a real demo: a short step load of every scenario, the report, the exit code.

Distributed as documented: a Locust master and 2 workers on loopback. Every scenario
the demo's roles allow runs (today exit_entry, service_hall, manual, partner_bulk and
day_mix; holder too once the service has the ``essc_platform`` role), with a fifth of
the arrivals bad input whose verdicts are checked. Latency is not judged (a shared CI
machine is noisy: the SLO is set far off); the knee, the node counts and the checked
answers are. A second run with an SLO no service meets must exit non-zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.scenarios import listed
from tests.run.conftest import REPO, child_env

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TODAY = ("exit_entry", "service_hall", "manual", "partner_bulk", "day_mix")
"""The scenarios that exist today; holder joins them by itself when its role does."""
BAD_REQUESTS = {"exit_entry": "/v1/verify/qr [bad code]", "manual": "/v1/verify/manual [wrong dob]"}


def loadtest(info: Path, url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtests", "run", "--target", url, "--info", str(info), "--out", str(out), *extra],
        capture_output=True, text=True, cwd=REPO, env=child_env(), timeout=240,
    )


def test_step_load_of_every_scenario_names_knees_and_nodes(tmp_path: Path, start_demo) -> None:
    demo = start_demo(tmp_path, "--permits", "800", "--event-rate", "0", "--rate-limit", "100000")
    out = tmp_path / "run"
    run = loadtest(demo.info_file, demo.info["url"], out, "--duration", "2.4", "--steps", "2", "--start-rps", "40",
                   "--arrivals", "uniform", "--generators", "2", "--bad-share", "0.2", "--idle-s", "0.5",
                   "--pause-s", "0.5", "--slo-p99-ms", "20000", "--holders", "1000000")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    assert "SLO met" in run.stdout and "exit code 0" in run.stdout

    result = json.loads((out / "report.json").read_text())
    keys = json.loads((out / "data" / "keys.json").read_text())
    assert set(result["scenarios"]) == set(listed(keys)) >= set(TODAY)
    for name, scen in result["scenarios"].items():
        assert len(scen["steps"]) == 2, name
        assert scen["knee_rps"] > 0 and scen["p99_ms_at_knee"] > 0, name
        assert scen["trusted"] is True, name
        for step in scen["steps"]:
            # Every answer was what the data expects, bad input included.
            assert step["failures"] == 0 and step["error_rate"] == 0, (name, step["errors"])
            assert step["generator"]["processes"] == 2, name  # both workers reported their share
            assert step["api"]["workers"] >= 1 and step["api"]["cpu_ms_per_request"] > 0, name
            assert step["redis"]["ops_per_s"] > 0 and step["redis"]["used_memory_mb"] > 0, name
            assert step["api"]["worker_rss_mb_max"] > 0, name
        sizing = scen["sizing"]
        assert isinstance(sizing["api_workers"], int) and sizing["api_workers"] >= 4, name
        assert sizing["redis_primaries"] >= 1 and sizing["redis_replicas"] >= sizing["redis_primaries"], name
        assert sizing["assumptions"]["holders"] == 1_000_000, name
    for name, request in BAD_REQUESTS.items():
        seen = [s["by_request"].get(request) for s in result["scenarios"][name]["steps"]]
        assert any(row and row["requests"] > 0 and row["failures"] == 0 for row in seen), (name, seen)
    cards = {r for s in result["scenarios"]["service_hall"]["steps"] for r in s["by_request"]}
    assert {"/v1/cards/challenge", "/v1/verify/card"} <= cards
    assert cards & {"/v1/verify/card [cloned chip]", "/v1/verify/card [unknown challenge]"}

    # The closed-loop comparison ran at the same rates, and the national and stress sizing exist.
    closed = result["scenarios"]["exit_entry"]["closed_loop_steps"]
    assert [s["rate_rps"] for s in closed] == [s["rate_rps"] for s in result["scenarios"]["exit_entry"]["steps"]]
    assert result["national"]["sizing_basis"] == "day_mix" and result["national"]["sizing"]["api_workers"] >= 4
    assert result["stress"]["scans_per_s"] == 50_000
    page = (out / "report.html").read_text()
    for image in ["open-vs-closed.png", "cpu.png", "redis.png", *(f"latency-{n}.png" for n in TODAY)]:
        assert image in result["plots"] and image in page, image
        assert (out / image).read_bytes()[:4] == b"\x89PNG", image

    # An SLO no service meets: no knee, and the exit code says so.
    broken = loadtest(demo.info_file, demo.info["url"], tmp_path / "broken", "--data-dir", str(out / "data"),
                      "--scenario", "manual", "--duration", "1", "--steps", "1", "--start-rps", "40",
                      "--closed-loop", "none", "--idle-s", "0.5", "--slo-p99-ms", "0.001")
    assert broken.returncode == 1, broken.stdout[-3000:] + broken.stderr[-3000:]
    assert "SLO NOT MET: manual: no step met the SLO" in broken.stdout
    verdict = json.loads((tmp_path / "broken" / "report.json").read_text())
    assert verdict["exit_code"] == 1 and verdict["scenarios"]["manual"]["knee_rps"] is None
