"""The generator's latency histograms: percentiles within one bucket (2 %), merging across processes."""

from __future__ import annotations

import random

import pytest

from loadtests.histogram import Histogram


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(-(-q * len(ordered) // 1)) - 1)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_are_within_one_bucket_of_the_exact_ones(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(-5.5, 1.2) for _ in range(20_000)]  # a few ms, with a long tail
    h = Histogram()
    for v in values:
        h.record(v)
    for q in (0.5, 0.95, 0.99, 0.999):
        assert h.percentile_s(q) == pytest.approx(exact(values, q), rel=0.025), q
    assert h.percentile_s(1.0) == max(values)
    assert h.count == len(values)


def test_merged_histograms_equal_one_of_everything_and_survive_json() -> None:
    rng = random.Random(7)
    parts = [[rng.uniform(0.001, 0.3) for _ in range(1000)] for _ in range(3)]
    whole = Histogram()
    pieces = []
    for part in parts:
        piece = Histogram()
        for v in part:
            piece.record(v)
            whole.record(v)
        pieces.append(Histogram.from_json(piece.to_json()))
    merged = Histogram.merged(pieces)
    assert merged.buckets == whole.buckets
    assert merged.count == 3000 and merged.max_s == whole.max_s and merged.min_s == whole.min_s
    assert merged.percentile_ms(0.99) == whole.percentile_ms(0.99)


def test_an_empty_histogram_has_no_percentile() -> None:
    assert Histogram().percentile_ms(0.99) is None
    assert Histogram.from_json(Histogram().to_json()).count == 0
