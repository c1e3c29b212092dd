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
RUNS = 10000


@pytest.mark.slow
@pytest.mark.parametrize("harness", ["fuzz_verify_qr.py", "fuzz_card.py", "fuzz_status_list.py"])
def test_fuzz_harness_bounded_run(harness: str, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(FUZZ / harness), f"-runs={RUNS}", "-seed=1", "-timeout=20",
         f"-artifact_prefix={tmp_path}/"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert completed.returncode == 0, (crashes, completed.stderr[-4000:])
    assert f"Done {RUNS} runs" in completed.stderr, completed.stderr[-2000:]
