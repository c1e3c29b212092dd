"""The compact stored layout's codec (verifier/index/stored.py) against msgspec on today's records.

    python3 -m pytest benchmarks/test_bench_stored.py -p no:cacheprovider -s

Writes ``benchmarks/results/stored.json``.

Method. In this process, 10,000 synthetic permits (``benchmarks.index_support``, the
shapes of the upstream simulator's). pytest-benchmark times, side by side in one run,
a loop over all of them of: the anchors, msgspec's decode of the legacy stored value
(``records.decode_record``, what the index reads today) and msgspec's encode of the
record (``records.encode_record``); the compiled codec's ``decode_stored`` of the
compact value (with the permit number, as the reader passes it) and ``encode_stored``;
and, for the record, the readable twin's; and the snapshot load's per-record loop
(``prepare_load``: identifiers checked, key, compact value, look-up entries gathered
into buckets), both twins, against ``encode_stored`` alone. The figures are the median loop over
10,000, per record. The ratios are anchor time / codec time (1.0: as fast as msgspec;
the targets: decode >= 1.0, encode >= 0.5), from those medians, and again as the
median of 15 interleaved rounds (anchor, codec, anchor, codec...), less moved by a
round the whole machine slowed. The mean sizes are those of the stored values.

Caveats: a shared 2-core machine; read the ratios.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.index_support import synthetic_records
from verifier.index import _stored_c, _stored_py
from verifier.index.records import decode_record, encode_record

RESULTS = Path(__file__).resolve().parent / "results" / "stored.json"
COUNT = 10_000
RECORDS = synthetic_records(COUNT)
PNS = [r.pn for r in RECORDS]
LEGACY = [encode_record(r) for r in RECORDS]
COMPACT = [_stored_c.encode_stored(r) for r in RECORDS]
assert COMPACT == [_stored_py.encode_stored(r) for r in RECORDS]
assert all(_stored_c.decode_stored(pn, raw) == r for pn, raw, r in zip(PNS, COMPACT, RECORDS))


def legacy_decode() -> None:
    for raw in LEGACY:
        decode_record(raw)


def legacy_encode() -> None:
    for record in RECORDS:
        encode_record(record)


def _decoding(module: Any) -> Callable[[], None]:
    decode = module.decode_stored

    def run() -> None:
        for pn, raw in zip(PNS, COMPACT):
            decode(pn, raw)

    return run


def _encoding(module: Any) -> Callable[[], None]:
    encode = module.encode_stored

    def run() -> None:
        for record in RECORDS:
            encode(record)

    return run


def _preparing(module: Any) -> Callable[[], None]:
    """The snapshot load's per-record loop (``SnapshotLoad.prepare``): frames of 1,024 records,
    into the buckets of a million-permit generation."""
    prepare = module.prepare_load

    def run() -> None:
        ssn: dict[int, bytearray] = {}
        cn: dict[int, bytearray] = {}
        for at in range(0, COUNT, 1024):
            prepare(RECORDS[at:at + 1024], b"{pv}:g1:p:", 16383, ssn, cn)

    return run


RUNS = {
    "legacy_decode_msgspec": legacy_decode,
    "compact_decode_c": _decoding(_stored_c),
    "compact_decode_py": _decoding(_stored_py),
    "legacy_encode_msgspec": legacy_encode,
    "compact_encode_c": _encoding(_stored_c),
    "compact_encode_py": _encoding(_stored_py),
    "load_prepare_c": _preparing(_stored_c),
    "load_prepare_py": _preparing(_stored_py),
}


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, Any]]:
    figures: dict[str, Any] = {
        "command": "python3 -m pytest benchmarks/test_bench_stored.py -p no:cacheprovider -s",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": os.getloadavg()},
        "method": (__doc__ or "").split("Method.")[1].split("Caveats:")[0].strip(),
        "records": COUNT,
        "mean_bytes_legacy": round(sum(map(len, LEGACY)) / COUNT, 2),
        "mean_bytes_compact": round(sum(map(len, COMPACT)) / COUNT, 2),
        "min_max_bytes_compact": [min(map(len, COMPACT)), max(map(len, COMPACT))],
        "share_of_compact_values_up_to_112_bytes": round(sum(len(v) <= 112 for v in COMPACT) / COUNT, 4),
        "per_record_us": {},
    }
    figures["size_ratio_compact_to_legacy"] = round(figures["mean_bytes_compact"] / figures["mean_bytes_legacy"], 3)
    yield figures
    us = figures["per_record_us"]
    for op in ("decode", "encode"):
        anchor = us.get(f"legacy_{op}_msgspec")
        for side in ("c", "py"):
            if anchor and us.get(f"compact_{op}_{side}"):
                figures[f"{op}_speed_ratio_{side}_to_msgspec"] = round(anchor / us[f"compact_{op}_{side}"], 3)
    encode = us.get("compact_encode_c")
    for side in ("c", "py"):
        if encode and us.get(f"load_prepare_{side}"):
            figures[f"load_prepare_{side}_time_over_encode_c"] = round(us[f"load_prepare_{side}"] / encode, 3)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS}\n" + json.dumps({k: v for k, v in figures.items() if k != "method"}, indent=2))


@pytest.mark.parametrize("name", list(RUNS))
def test_loop_over_the_records(benchmark: Any, results: dict[str, Any], name: str) -> None:
    benchmark.pedantic(RUNS[name], rounds=20 if name.endswith("_py") else 60, warmup_rounds=2)
    results["per_record_us"][name] = round(benchmark.stats.stats.median / COUNT * 1e6, 4)


def _interleaved(anchor: Callable[[], None], codec: Callable[[], None], rounds: int = 15) -> float:
    ratios = []
    for _ in range(rounds):
        started = time.perf_counter()
        anchor()
        middle = time.perf_counter()
        codec()
        ratios.append((middle - started) / (time.perf_counter() - middle))
    return round(sorted(ratios)[rounds // 2], 3)


def test_interleaved_ratios(results: dict[str, Any]) -> None:
    results["decode_speed_ratio_c_to_msgspec_median_of_rounds"] = _interleaved(legacy_decode, RUNS["compact_decode_c"])
    results["encode_speed_ratio_c_to_msgspec_median_of_rounds"] = _interleaved(legacy_encode, RUNS["compact_encode_c"])
    # the load's loop against the encoding alone (what any load of these values must do)
    results["load_prepare_c_time_over_encode_c_median_of_rounds"] = round(
        1 / _interleaved(RUNS["compact_encode_c"], RUNS["load_prepare_c"]), 3)
    results["load_prepare_py_time_over_encode_c_median_of_rounds"] = round(
        1 / _interleaved(RUNS["compact_encode_c"], RUNS["load_prepare_py"], rounds=7), 3)
