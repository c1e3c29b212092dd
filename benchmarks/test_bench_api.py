"""The API over real HTTP against its anchors, in one run on one machine (DESIGN, Targets).

    python3 -m pytest benchmarks/test_bench_api.py -p no:cacheprovider -s

Writes ``benchmarks/results/api.json``.

Method. The whole service runs as ``verifier demo`` would run it (private Redis, the
upstream simulator with 20,000 permits and no events, the sync job), with the API on
one uvicorn worker (``verifier serve --workers 1``). The anchor is a bare Litestar
endpoint (``benchmarks/api_support/anchor_app.py``) on the same uvicorn settings
(``verifier.run.serve.UVICORN_OPTIONS``), one worker, whose handler only runs
libsodium's verify of the code's signed bytes. Load comes from ``wrk`` (one thread,
keep-alive; a bounded Python generator where wrk is absent) in a separate process on
127.0.0.1: on 2 cores, the client has one core and the server (with Redis) the other.

- ``POST /v1/verify/qr``, cold: every request carries a WP1 code the worker has not
  seen in the run (317,000 distinct codes minted for indexed permits), so each one
  pays the whole path, signature included, as the anchor does. Judged against the
  target (>= 0.6x the anchor's requests/s). Repeat: one code again and again (the
  verdict cache's case), for the record. Saturating runs: 64 connections, 3
  interleaved rounds of 5 s (anchor, cold, repeat), the median round of each.
- Latency: p50/p99 with each run paced at half of its own saturating rate (wrk's
  ``delay``: a pause before each request on each connection; the achieved rate is
  recorded).
- The same endpoint with an all-SM2 population (WIRE-FORMAT 9): a second stack whose
  simulator signs with SM2 and SM3 (``verifier demo --issuer-alg SM2-SM3``), every
  request a new SM2-signed code, in 3 rounds interleaved with rounds of new Ed25519
  codes on the first stack and of an SM2 anchor (the bare endpoint running OpenSSL's
  SM2 verify of one code's bytes); the ratio of the SM2 population's requests/s to
  the Ed25519 one's, so that the capacity report can size for either.
- ``POST /v1/permits/lookup`` with 1,000 permit numbers: permits/s through HTTP
  against a bare redis-py (hiredis) MGET of the same 1,000 index keys, timed by
  pytest-benchmark in this process. Target >= 0.4x.

Caveats: a shared 2-core machine; figures move with whatever else runs (the load
average at the start is recorded). Ratios are what to read, not absolute rates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis

from benchmarks.api_support.anchor_app import ANCHOR_ENV
from benchmarks.api_support.cose_parts import signed_parts
from benchmarks.api_support.loadgen import LoadResult, run_load, wrk_available
from verifier.index.keys import KeyLayout, Pointer
from verifier.lib.redis_server import free_port
from verifier.run.demo import DemoOptions, DemoStack, create_demo_keys
from verifier.run.processes import Child, wait_until

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "api.json"
PERMITS = 20_000
SEED = 1
SATURATING_CONNECTIONS = 64
ROUNDS = 3
ROUND_S = 5.0
WARM_CODES = 2_000
ROUND_CODES = 75_000  # more than a round sends at this machine's rates (15k/s): every request a new code
PACED_CODES = 90_000  # a quarter to calibrate (2 s), the rest for the paced run (8 s at up to ~8k/s)
CODES = WARM_CODES + ROUNDS * ROUND_CODES + PACED_CODES
RUN_S = 8.0
PACE_MS = 10  # wrk delay per connection in the paced runs
LOOKUP_IDS = 1000
SM2_ROUND_CODES = 25_000  # SM2 rounds run at about a fifth of Ed25519's rate: fewer codes fill 5 s
SM2_WARM_CODES = 1_000
VERIFY_QR_TARGET = 0.6
VERIFY_QR_NEXT_STEP = 0.9
"""Issue 15's next step for the cold ratio (recorded, not asserted: on a shared machine a
round can fall under it; the DESIGN target above is asserted)."""
LOOKUP_TARGET = 0.4
CST = dt.timezone(dt.timedelta(hours=8))


@dataclass
class Bench:
    stack: DemoStack
    anchor_url: str
    tokens: dict[str, str]
    codes: list[str]
    permit_numbers: list[str]
    twin: Any
    """The simulator's twin (same seed), to mint more codes."""
    usable: list[Any]


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, Any]]:
    figures: dict[str, Any] = {
        "command": "python3 -m pytest benchmarks/test_bench_api.py -p no:cacheprovider -s",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
            "load_generator": "wrk -t1" if wrk_available() else "python (asyncio, one process)",
        },
        "method": (__doc__ or "").split("Method.")[1].split("Caveats:")[0].strip(),
    }
    yield figures
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


def _usable_records(upstream_twin: Any) -> list[Any]:
    today = dt.datetime.now(CST).date().isoformat()
    records = (upstream_twin.record_at(i) for i in range(upstream_twin.count))
    return [r for r in records if r.status == "active" and r.vf <= today < r.vt]


def _mint(twin: Any, usable: list[Any], count: int, iat_offset: int = 0) -> list[str]:
    """``count`` distinct WP1 codes of usable permits, minted by the simulator's twin (on 2
    threads: SM2 signing through libcrypto releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    now = int(time.time()) - iat_offset
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda i: twin.mint_wp1(usable[i % len(usable)].pn, iat=now - 60 - i // len(usable))[0],
                             range(count), chunksize=500))


@contextlib.contextmanager
def _stack_and_anchor(state: Path, issuer_alg: str, codes: int) -> Iterator[Bench]:
    """A demo stack whose simulator signs with ``issuer_alg``, codes for it, and its anchor."""
    from verifier.upstream.simulator import Upstream

    stack = DemoStack(DemoOptions(
        state_dir=state, port=0, workers=1, permits=PERMITS, seed=SEED, event_rate=0.0,
        rate_limit_per_s=1e9,  # the limiter's Redis round trips stay in; its 429s do not
        issuer_alg=issuer_alg,
    ))
    anchor: Child | None = None
    with stack:
        tokens = {role: k["token"] for role, k in create_demo_keys(stack.store_url, ["91110000100000000A"]).items()}
        # The simulator's own keys and permits, recreated here from its seed (no events: identical),
        # so 100,000 codes are minted at library speed rather than over HTTP.
        twin = Upstream.create(permits=PERMITS, seed=SEED, issuer_alg=issuer_alg)  # type: ignore[arg-type]
        usable = _usable_records(twin)
        minted = _mint(twin, usable, codes)
        trust = httpx.get(f"{stack.upstream_url}/trust-list", timeout=10).json()
        signed, signature, public_key = signed_parts(minted[0], trust)
        vector = state / "anchor-vector.json"
        vector.write_text(json.dumps({"signed_hex": signed.hex(), "signature_hex": signature.hex(),
                                      "public_key_hex": public_key.hex(), "alg": issuer_alg}))
        anchor_port = free_port()
        anchor = Child(
            "anchor",
            [sys.executable, "-m", "verifier.run.serve", "benchmarks.api_support.anchor_app:create_anchor_app",
             str(anchor_port), "1"],
            state / "logs" / "anchor.log",
            env={**os.environ, ANCHOR_ENV: str(vector), "PYTHONPATH": str(HERE.parent)},
        ).start()
        try:
            anchor_url = f"http://127.0.0.1:{anchor_port}"
            wait_until(lambda: _answers(anchor_url), timeout_s=60, what="the anchor app", abort=anchor.check_running)
            yield Bench(stack, anchor_url, tokens, minted, [r.pn for r in usable], twin, usable)
        finally:
            anchor.stop()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    with _stack_and_anchor(tmp_path_factory.mktemp("api-bench"), "EdDSA", CODES) as made:
        yield made


@pytest.fixture(scope="module")
def sm2_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """The all-SM2 population's stack (started after the Ed25519 tests, beside their stack)."""
    with _stack_and_anchor(tmp_path_factory.mktemp("api-bench-sm2"), "SM2-SM3",
                           SM2_WARM_CODES + ROUNDS * SM2_ROUND_CODES) as made:
        yield made


def _answers(url: str) -> bool:
    try:
        return httpx.post(url + "/verify", json={"qr": "x", "terminal": "t"}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _qr_body(code: str) -> bytes:
    return msgspec.json.encode({"qr": code, "terminal": "bench-1"})


def _paced(url: str, bodies: list[bytes], headers: dict[str, str], saturating: LoadResult) -> dict[str, Any]:
    """p50/p99 with the load held near half of ``saturating``'s rate.

    Each connection sends one request per (pause + response time): a short run with a
    first guess of connections measures the rate one connection gives, and the
    measured run uses as many as the target needs. Calibration and measurement take
    different bodies, so neither repeats the other's codes.
    """
    target = saturating.requests_per_s / 2
    guess = max(1, round(target * (PACE_MS + 1.0) / 1000))
    calibration = run_load(url, bodies[: len(bodies) // 4], headers, connections=guess, seconds=2, delay_ms=PACE_MS)
    per_connection = max(calibration.requests_per_s / guess, 1.0)
    connections = max(1, round(target / per_connection))
    paced = run_load(url, bodies[len(bodies) // 4 :], headers, connections=connections, seconds=RUN_S, delay_ms=PACE_MS)
    return {"target_requests_per_s": round(target, 1), **paced.as_dict()}


def _median_run(runs: list[LoadResult]) -> LoadResult:
    return sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]


def test_verify_qr_against_bare_litestar(bench: Bench, results: dict[str, Any]) -> None:
    api = bench.stack.api_url + "/v1/verify/qr"
    anchor = bench.anchor_url + "/verify"
    headers = {"Authorization": f"Bearer {bench.tokens['exit_entry']}"}
    # The codes, in slices that never overlap: warm-up, one per saturating round, the paced runs.
    warm = bench.codes[:WARM_CODES]
    round_codes = [bench.codes[WARM_CODES + i * ROUND_CODES : WARM_CODES + (i + 1) * ROUND_CODES] for i in range(ROUNDS)]
    paced_codes = bench.codes[WARM_CODES + ROUNDS * ROUND_CODES :]

    first = httpx.post(api, content=_qr_body(warm[0]), headers=headers | {"Content-Type": "application/json"})
    assert first.json()["result"] == "VALID", first.text
    assert httpx.post(anchor, content=_qr_body(warm[0]), headers={"Content-Type": "application/json"}).json() == {
        "result": "VALID"}

    warm_bodies = [_qr_body(c) for c in warm]
    run_load(anchor, warm_bodies, {}, connections=SATURATING_CONNECTIONS, seconds=2)
    run_load(api, warm_bodies, headers, connections=SATURATING_CONNECTIONS, seconds=2)

    # Interleaved rounds, the median of each: drift on a shared machine hits both sides alike.
    anchor_runs, cold_runs, repeat_runs = [], [], []
    for codes in round_codes:
        bodies = [_qr_body(c) for c in codes]
        anchor_runs.append(run_load(anchor, bodies, {}, connections=SATURATING_CONNECTIONS, seconds=ROUND_S))
        cold_runs.append(run_load(api, bodies, headers, connections=SATURATING_CONNECTIONS, seconds=ROUND_S))
        repeat_runs.append(run_load(api, [_qr_body(warm[1])], headers, connections=SATURATING_CONNECTIONS,
                                    seconds=ROUND_S))
    anchor_max, api_cold, api_repeat = _median_run(anchor_runs), _median_run(cold_runs), _median_run(repeat_runs)
    paced_bodies = [_qr_body(c) for c in paced_codes]
    anchor_paced = _paced(anchor, paced_bodies, {}, anchor_max)
    api_paced = _paced(api, paced_bodies, headers, api_cold)

    ratio = api_cold.requests_per_s / anchor_max.requests_per_s
    results["verify_qr"] = {
        "rounds": ROUNDS,
        "round_s": ROUND_S,
        "anchor_saturating": anchor_max.as_dict(),
        "api_cold_saturating": api_cold.as_dict() | {
            "distinct_codes": ROUND_CODES,
            "every_request_a_new_code": all(r.requests <= ROUND_CODES for r in cold_runs),
        },
        "api_repeat_saturating": api_repeat.as_dict(),
        "requests_per_s_of_each_round": {
            "anchor": [r.requests_per_s for r in anchor_runs],
            "api_cold": [r.requests_per_s for r in cold_runs],
            "api_repeat": [r.requests_per_s for r in repeat_runs],
        },
        "anchor_at_half_rate": anchor_paced,
        "api_cold_at_half_rate": api_paced,
        "ratio_api_cold_to_anchor": round(ratio, 3),
        "ratio_api_repeat_to_anchor": round(api_repeat.requests_per_s / anchor_max.requests_per_s, 3),
        "target": f">= {VERIFY_QR_TARGET} (cold)",
        "met": ratio >= VERIFY_QR_TARGET,
        "next_step": f">= {VERIFY_QR_NEXT_STEP} (cold, issue 15)",
        "next_step_met": ratio >= VERIFY_QR_NEXT_STEP,
        "ratio_of_each_round": [round(c.requests_per_s / a.requests_per_s, 3) for a, c in zip(anchor_runs, cold_runs)],
    }
    # the median of the rounds' own ratios (each round's two runs next to each other): less moved by a
    # round the whole machine slowed than the ratio of the two medians above
    each = results["verify_qr"]["ratio_of_each_round"]
    results["verify_qr"]["ratio_median_of_rounds"] = sorted(each)[len(each) // 2]
    for run in (*anchor_runs, *cold_runs, *repeat_runs):
        assert run.errors == 0, run
    # the cold reading holds only if no code came twice (wrk cycles through its bodies)
    assert results["verify_qr"]["api_cold_saturating"]["every_request_a_new_code"], cold_runs
    assert api_paced["requests"] <= len(paced_codes) - len(paced_codes) // 4, api_paced
    assert ratio >= VERIFY_QR_TARGET, results["verify_qr"]


def test_lookup_against_bare_mget(bench: Bench, results: dict[str, Any], benchmark: Any) -> None:
    rng = random.Random(5)
    id_sets = [rng.sample(bench.permit_numbers, LOOKUP_IDS) for _ in range(20)]
    headers = {"Authorization": f"Bearer {bench.tokens['social_insurance']}"}
    api = bench.stack.api_url + "/v1/permits/lookup"
    bodies = [msgspec.json.encode({"by": "pn", "ids": ids}) for ids in id_sets]
    answer = httpx.post(api, content=bodies[0], headers=headers | {"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["found"]) == LOOKUP_IDS

    # The anchor: the very keys the index keeps these permits under, in one MGET.
    client = redis.Redis.from_url(bench.stack.redis_url)
    try:
        layout = KeyLayout()
        pointer = Pointer.parse(client.get(layout.current))
        assert pointer is not None
        keys = [layout.record_prefix(pointer.generation) + pn.encode() for pn in id_sets[0]]
        assert all(value is not None for value in client.mget(keys))
        benchmark(client.mget, keys)
    finally:
        client.close()
    mget_permits_per_s = LOOKUP_IDS / benchmark.stats.stats.median

    run_load(api, bodies, headers, connections=8, seconds=2)  # warm-up
    api_run = run_load(api, bodies, headers, connections=8, seconds=RUN_S)
    api_permits_per_s = api_run.requests_per_s * LOOKUP_IDS
    ratio = api_permits_per_s / mget_permits_per_s
    results["lookup"] = {
        "ids_per_request": LOOKUP_IDS,
        "mget_median_s": benchmark.stats.stats.median,
        "mget_permits_per_s": round(mget_permits_per_s),
        "api": api_run.as_dict(),
        "api_permits_per_s": round(api_permits_per_s),
        "ratio_api_to_mget": round(ratio, 3),
        "target": f">= {LOOKUP_TARGET}",
        "met": ratio >= LOOKUP_TARGET,
    }
    assert api_run.errors == 0, api_run
    assert ratio >= LOOKUP_TARGET, results["lookup"]


def test_verify_qr_with_an_all_sm2_population(bench: Bench, sm2_bench: Bench, results: dict[str, Any]) -> None:
    """The API's cold rate with every code SM2-signed against every code Ed25519-signed,
    interleaved round by round (same settings, same machine, same moment)."""
    ed_api = bench.stack.api_url + "/v1/verify/qr"
    sm2_api = sm2_bench.stack.api_url + "/v1/verify/qr"
    sm2_anchor = sm2_bench.anchor_url + "/verify"
    ed_headers = {"Authorization": f"Bearer {bench.tokens['exit_entry']}"}
    sm2_headers = {"Authorization": f"Bearer {sm2_bench.tokens['exit_entry']}"}
    warm = sm2_bench.codes[:SM2_WARM_CODES]
    first = httpx.post(sm2_api, content=_qr_body(warm[0]), headers=sm2_headers | {"Content-Type": "application/json"})
    assert first.json()["result"] == "VALID", first.text
    assert httpx.post(sm2_anchor, content=_qr_body(warm[0]), headers={"Content-Type": "application/json"}).json() == {
        "result": "VALID"}
    # New Ed25519 codes (an hour older than the first test's: none of them seen before).
    ed_codes = _mint(bench.twin, bench.usable, ROUNDS * ROUND_CODES, iat_offset=3600)
    warm_bodies = [_qr_body(c) for c in warm]
    run_load(sm2_anchor, warm_bodies, {}, connections=SATURATING_CONNECTIONS, seconds=2)
    run_load(sm2_api, warm_bodies, sm2_headers, connections=SATURATING_CONNECTIONS, seconds=2)

    ed_runs, sm2_runs, anchor_runs = [], [], []
    for i in range(ROUNDS):
        sm2_bodies = [_qr_body(c) for c in
                      sm2_bench.codes[SM2_WARM_CODES + i * SM2_ROUND_CODES:SM2_WARM_CODES + (i + 1) * SM2_ROUND_CODES]]
        ed_bodies = [_qr_body(c) for c in ed_codes[i * ROUND_CODES:(i + 1) * ROUND_CODES]]
        ed_runs.append(run_load(ed_api, ed_bodies, ed_headers, connections=SATURATING_CONNECTIONS, seconds=ROUND_S))
        sm2_runs.append(run_load(sm2_api, sm2_bodies, sm2_headers, connections=SATURATING_CONNECTIONS,
                                 seconds=ROUND_S))
        anchor_runs.append(run_load(sm2_anchor, sm2_bodies, {}, connections=SATURATING_CONNECTIONS, seconds=ROUND_S))
    ed, sm2, anchor = _median_run(ed_runs), _median_run(sm2_runs), _median_run(anchor_runs)
    ratio = sm2.requests_per_s / ed.requests_per_s
    results["verify_qr_sm2_population"] = {
        "rounds": ROUNDS,
        "round_s": ROUND_S,
        "api_cold_ed25519": ed.as_dict(),
        "api_cold_sm2": sm2.as_dict() | {
            "distinct_codes": SM2_ROUND_CODES,
            "every_request_a_new_code": all(r.requests <= SM2_ROUND_CODES for r in sm2_runs),
        },
        "sm2_anchor_saturating": anchor.as_dict(),
        "requests_per_s_of_each_round": {
            "api_cold_ed25519": [r.requests_per_s for r in ed_runs],
            "api_cold_sm2": [r.requests_per_s for r in sm2_runs],
            "sm2_anchor": [r.requests_per_s for r in anchor_runs],
        },
        "ratio_sm2_population_to_ed25519_population": round(ratio, 3),
        "ratio_sm2_api_to_sm2_anchor": round(sm2.requests_per_s / anchor.requests_per_s, 3),
    }
    for run in (*ed_runs, *sm2_runs, *anchor_runs):
        assert run.errors == 0, run
    assert results["verify_qr_sm2_population"]["api_cold_sm2"]["every_request_a_new_code"], sm2_runs
    assert all(r.requests <= ROUND_CODES for r in ed_runs), ed_runs
