"""Small pieces of the hot path: RFC 3339 times as datetime writes them, the worker's GC policy."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.api.verdicts.status import rfc3339


def _reference(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False) | st.integers(0, 4_000_000_000).map(lambda i: i / 1000)
       | st.integers(0, 4_000_000_000_000).map(lambda i: i / 1e6))
def test_rfc3339_is_what_datetime_writes(epoch: float) -> None:
    assert rfc3339(epoch) == _reference(epoch)


def test_rfc3339_at_the_edges_of_a_second() -> None:
    for epoch in (0.0, 1.9999995, 1.0000005, 1700000000.9999996, 1700000000.0004999, -0.0000004):
        assert rfc3339(epoch) == _reference(epoch), epoch


def test_a_serving_worker_freezes_its_startup_heap_and_collects_young_objects_less_often() -> None:
    # in a process of its own: gc.freeze() is for the whole process
    code = ("import gc; from verifier.api.runtime import GC_THRESHOLDS, tune_gc; tune_gc(); "
            "assert gc.get_freeze_count() > 1000, gc.get_freeze_count(); "
            "assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
