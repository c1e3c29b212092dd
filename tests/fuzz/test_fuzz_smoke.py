"""A short, bounded run of each fuzz harness (fuzz/), as CI's fuzz smoke test.

The harnesses compare the compiled and the Python twin on every input and
re-check any VALID verdict independently; a disagreement or an escaping
exception makes libFuzzer exit non-zero and write the input to ``crash-*``
(here in a temporary folder, whose content the failure message shows).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
# Runs per harness: the SM2 one verifies with pure-Python gmalg in the Python twin
# (~30 ms a signature), so fewer of its inputs fit the same time.
RUNS = {"fuzz_verify_qr.py": 10000, "fuzz_card.py": 10000, "fuzz_status_list.py": 10000, "fuzz_offline.py": 10000,
        "fuzz_stored.py": 10000, "fuzz_sm2.py": 1000}


@pytest.mark.slow
@pytest.mark.parametrize("harness", sorted(RUNS))
def test_fuzz_harness_bounded_run(harness: str, tmp_path: Path) -> None:
    runs = RUNS[harness]
    completed = subprocess.run(
        [sys.executable, str(FUZZ / harness), f"-runs={runs}", "-seed=1", "-timeout=20",
         f"-artifact_prefix={tmp_path}/"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert completed.returncode == 0, (crashes, completed.stderr[-4000:])
    assert f"Done {runs} runs" in completed.stderr, completed.stderr[-2000:]
