"""The load test runs headless against a demo and its SLO sets the exit code (smoke run, ~10 s)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run.conftest import REPO, child_env

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SCENARIOS = (
    "/v1/verify/qr [WP1 repeat]", "/v1/verify/qr [WP1 cold]", "/v1/cards/challenge", "/v1/verify/card",
    "/v1/verify/qr [ES1 fresh]", "/v1/verify/manual", "/v1/permits/{pn}", "/v1/permits/lookup [pn x1000]",
)


def locust(data: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"), "--headless",
         "-u", "10", "-r", "10", "-t", "8s", "--host", url, "--data-dir", str(data), "--only-summary",
         # Latency is not judged here (a shared CI machine is noisy): only correctness.
         "--slo-p99-ms", "60000", *extra],
        capture_output=True, text=True, cwd=REPO, env=child_env(), timeout=120,
    )


def test_locust_smoke_against_the_demo(tmp_path: Path, start_demo) -> None:
    demo = start_demo(tmp_path, "--permits", "800", "--event-rate", "0", "--rate-limit", "100000")
    data = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, str(REPO / "loadtests" / "make_data.py"), "--info", str(demo.info_file), "--out", str(data),
         "--hot", "20", "--cold", "300", "--cards", "20", "--partner-lookups", "3", "--keys-per-role", "2"],
        capture_output=True, text=True, cwd=REPO, env=child_env(), timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads((data / "meta.json").read_text())["counts"]["wp1_cold"] == 300

    run = locust(data, demo.info["url"])
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert ": met" in output
    for name in SCENARIOS:  # every kind of caller made its requests
        assert name in output, name
    assert "failures 0 (0.0000%)" in output

    # Expectations the service does not meet: the SLO check fails the run.
    wrong = tmp_path / "wrong"
    shutil.copytree(data, wrong)
    hot = [json.loads(line) for line in (wrong / "wp1_hot.ndjson").read_text().splitlines()]
    (wrong / "wp1_hot.ndjson").write_text("".join(json.dumps({**row, "expect": "PERMIT_NOT_FOUND"}) + "\n" for row in hot))
    run = locust(wrong, demo.info["url"])
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-4000:]
    assert "NOT MET (failure ratio" in output
    assert "expected PERMIT_NOT_FOUND, got" in output
