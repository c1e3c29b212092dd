"""What the body checks of issue 11 cost on the hot path: the media type and the duplicate-key scan.

    python3 -m pytest benchmarks/test_bench_body.py -p no:cacheprovider -s

Writes ``benchmarks/results/body.json``.

Method. In this process, pytest-benchmark times, side by side in one run: the anchor,
the strict msgspec decode of a ``POST /v1/verify/qr`` body (a real 419-byte WP1 code and
a terminal id) into ``QrRequest``, which is all ``read_json`` did before; and the same
decode with what it does now besides: the ``Content-Type`` check and
``duplicate_key`` (one split of the body at its quotes; no backslash in it). The same
for a batch body of 1,000 codes. And, for the record, the slow path a backslash in the
body takes (Python's C JSON scanner, object by object). The HTTP request around it
(~60 µs of server CPU on this machine, DESIGN) and the signature check (~37 µs) are
not in these figures: the share of a whole request is the added time over those.

Caveats: a shared 2-core machine; read the ratios.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from verifier.api.body import _check_json_media_type, duplicate_key
from verifier.api.qr.schemas import QrBatchRequest, QrRequest
from verifier.issuing import IssuerKey, mint_wp1
from verifier.index import Card, PermitRecord

RESULTS = Path(__file__).resolve().parent / "results" / "body.json"
# What the server measured per request (DESIGN, Targets: a POST of small msgspec Structs on
# uvicorn) plus the libsodium verify: the cost a whole cold verify/qr request has anyway.
REQUEST_FLOOR_US = 62.0 + 37.0


def _code() -> str:
    permit = PermitRecord(pn="WP1100002020000001", n="SMITH JOHN", nat="GBR", dob="1985-04-12", cat="B",
                          emp="91110000100000000A", vf="2026-01-01", vt="2027-12-31", v=1, status="active",
                          ssn="900000001", cards=(Card("CWP1100002020000001", "active"),))
    return mint_wp1(IssuerKey.generate(["CN-110000"]), permit, iat=1_767_225_600)


CODE = _code()
QR_BODY = msgspec.json.encode({"qr": CODE, "terminal": "bench-1"})
BATCH_BODY = msgspec.json.encode({"codes": [CODE] * 1000, "terminal": "bench-1"})
ESCAPED_BODY = QR_BODY.replace(b'"terminal"', b'"\\u0074erminal"')
QR = msgspec.json.Decoder(QrRequest)
BATCH = msgspec.json.Decoder(QrBatchRequest)


def before(decoder: Any, raw: bytes) -> Any:
    return decoder.decode(raw)


def after(decoder: Any, raw: bytes) -> Any:
    _check_json_media_type(b"application/json", "POST")
    data = decoder.decode(raw)
    assert duplicate_key(raw) is None
    return data


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, Any]]:
    figures: dict[str, Any] = {
        "command": "python3 -m pytest benchmarks/test_bench_body.py -p no:cacheprovider -s",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": os.getloadavg()},
        "method": (__doc__ or "").split("Method.")[1].split("Caveats:")[0].strip(),
        "qr_body_bytes": len(QR_BODY),
        "batch_body_bytes": len(BATCH_BODY),
    }
    yield figures
    for name in ("qr", "batch"):
        b, a = figures.get(f"{name}_before_us"), figures.get(f"{name}_after_us")
        if b and a:
            figures[f"{name}_ratio_after_to_before"] = round(a / b, 3)
            figures[f"{name}_added_us"] = round(a - b, 3)
    if "qr_added_us" in figures:
        figures["qr_added_share_of_a_cold_request"] = round(figures["qr_added_us"] / REQUEST_FLOOR_US, 4)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS}\n" + json.dumps({k: v for k, v in figures.items() if k != "method"}, indent=2))


def _mean_us(benchmark: Any) -> float:
    return round(benchmark.stats.stats.median * 1e6, 3)


@pytest.mark.parametrize("side", ["before", "after"])
def test_qr_body(benchmark: Any, results: dict[str, Any], side: str) -> None:
    run = before if side == "before" else after
    assert benchmark(run, QR, QR_BODY).qr == CODE
    results[f"qr_{side}_us"] = _mean_us(benchmark)


@pytest.mark.parametrize("side", ["before", "after"])
def test_batch_body(benchmark: Any, results: dict[str, Any], side: str) -> None:
    run = before if side == "before" else after
    assert len(benchmark(run, BATCH, BATCH_BODY).codes) == 1000
    results[f"batch_{side}_us"] = _mean_us(benchmark)


def test_escaped_body_takes_the_slow_path(benchmark: Any, results: dict[str, Any]) -> None:
    assert benchmark(duplicate_key, ESCAPED_BODY) is None
    results["escaped_qr_body_duplicate_check_us"] = _mean_us(benchmark)
