"""kill -9 of the writer at random instants: nothing lost, nothing applied twice."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from verifier.index import SyncPermitIndex, decode_change
from verifier.index.keys import KeyLayout

from . import feed_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _spawn(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.index.feed_worker", url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_kill_9_at_random_points_loses_nothing_and_applies_nothing_twice(
    redis_url: str, redis_sync: Any
) -> None:
    rng = random.Random(7)
    pubsub = redis_sync.pubsub()
    pubsub.subscribe(KeyLayout().channel)
    kills = 0
    # Kill after random delays spread over startup, snapshot load and the feed.
    # Each run is killed after a random number of progress lines (snapshot batches,
    # then pages) plus a random sub-millisecond delay, so kills land anywhere: in the
    # load, before the commit, between the read and the script of a page, after it.
    while kills < 24:
        process = _spawn(redis_url)
        assert process.stdout is not None
        for _ in range(rng.randrange(0, 12)):
            if not process.stdout.readline():
                break
        time.sleep(rng.uniform(0, 0.003))
        if process.poll() is not None:
            out, err = process.communicate()
            assert process.returncode == 0, err.decode()
            break
        process.kill()
        process.communicate()
        kills += 1
    process = _spawn(redis_url)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    assert out.splitlines()[-1] == b"done %d" % feed_worker.EVENTS
    assert kills >= 20

    reader = SyncPermitIndex(redis_sync)
    expected = feed_worker.final_records()
    held = {r.pn: r for r in reader.iter_records()}
    assert held == expected
    state = reader.freshness()
    assert state.seq == feed_worker.EVENTS and state.count == feed_worker.PERMITS
    # Secondary look-ups: exactly the final ssn and card numbers resolve.
    by_ssn = reader.get_many("ssn", [r.ssn for r in expected.values() if r.ssn])
    assert {k: v.pn for k, v in by_ssn.items()} == {r.ssn: r.pn for r in expected.values() if r.ssn}
    all_cns = {c.cn: r for r in expected.values() for c in r.cards}
    by_cn = reader.get_many("cn", list(all_cns))
    assert {k: v.pn for k, v in by_cn.items()} == {cn: r.pn for cn, r in all_cns.items()}
    old_ssns = {e.permit.ssn for e in feed_worker.feed()} - {r.ssn for r in expected.values()}
    assert old_ssns and reader.get_many("ssn", sorted(old_ssns)) == {}
    # Only one generation is left (orphaned loads of killed workers were dropped).
    assert len(redis_sync.smembers(KeyLayout().gens)) == 1

    # Every published apply message names a page applied once: cursors strictly grow.
    seqs = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            change = decode_change(message["data"])
            if change.kind == "apply":
                seqs.append(change.seq)
    pubsub.close()
    assert seqs and seqs == sorted(set(seqs))
