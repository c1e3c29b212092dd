"""The API ratio checked from outside: the demo as a user starts it, against the bare endpoint.

    python3 -m benchmarks.outside_check [--rounds 5] [--round-s 5] [--connections 32] [--info INFO.json]

Without ``--info`` it starts ``verifier demo --workers 1 --rate-limit 1000000
--event-rate 0 --port 0`` itself (a state folder of its own, removed after); with
``--info`` it uses a demo already running (what ``verifier demo --info FILE`` wrote;
it must have been started with those flags). Beside it, the bench's anchor
(``benchmarks/api_support/anchor_app.py``: a bare Litestar endpoint whose handler only
runs libsodium's verify of one code's signed bytes) on the same uvicorn settings,
one worker.

Load: ``wrk -t1`` (the Python generator where wrk is absent), ``--connections``
keep-alive connections, interleaved rounds (anchor, then ``POST /v1/verify/qr``),
every API request a WP1 code the worker has not seen (minted by the simulator's
twin for usable permits, as the benchmark does). Printed per round: both rates,
their ratio, and the CPU each server process used per request (from /proc: the
API worker's and the anchor's own process, so the load generator and Redis are not
counted); at the end the median ratio and the median CPU above the anchor. The
JSON goes to ``--out`` when given.

What differs from ``benchmarks/test_bench_api.py`` (both are the same measurement;
see README, Performance): the demo's default of 3,000 permits (the bench's stack
20,000), 32 connections here (64 there), and this script reads the CPU per request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec

HERE = Path(__file__).resolve().parent
CST = dt.timezone(dt.timedelta(hours=8))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_CODES = 8000


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _start_demo(state: Path, info_file: Path, permits: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "verifier", "demo", "--workers", "1", "--rate-limit", "1000000",
               "--event-rate", "0", "--port", "0", "--permits", str(permits), "--state-dir", str(state),
               "--info", str(info_file)]
    log = open(state / "demo.out", "wb")  # noqa: SIM115 (kept open for the child's life)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not info_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the demo did not start: {(state / 'demo.out').read_text()[-2000:]}")
        time.sleep(0.5)
    return process


def _mint(info: dict[str, Any], count: int) -> tuple[list[str], dict[str, Any]]:
    """``count`` distinct WP1 codes for usable permits, by the simulator's twin (same seed and count)."""
    from verifier.upstream.simulator import Upstream

    twin = Upstream.create(permits=int(info["permits"]), seed=int(info["seed"]))
    today = dt.datetime.now(CST).date().isoformat()
    records = (twin.record_at(i) for i in range(twin.count))
    usable = [r for r in records if r.status == "active" and r.vf <= today < r.vt]
    now = int(time.time())
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda i: twin.mint_wp1(usable[i % len(usable)].pn, iat=now - 60 - i // len(usable))[0],
                              range(count), chunksize=500))
    return codes, twin.trust_list()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--info", type=Path, help="a running demo's info file (else one is started)")
    parser.add_argument("--permits", type=int, default=3000, help="permits of the demo started here (default 3000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-s", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warm-s", type=float, default=5.0, help="warm-up of each server (default 5 s)")
    parser.add_argument("--round-codes", type=int, default=70_000,
                        help="distinct codes per API round: more than a round sends (default 70,000)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    from benchmarks.api_support.anchor_app import ANCHOR_ENV
    from benchmarks.api_support.cose_parts import signed_parts
    from benchmarks.api_support.loadgen import run_load, wrk_available
    from verifier.lib.redis_server import free_port
    from verifier.run.processes import Child, wait_until

    work = Path(tempfile.mkdtemp(prefix="pv-outside-"))
    demo = None
    anchor = None
    try:
        info_file = args.info
        if info_file is None:
            info_file = work / "info.json"
            print("starting verifier demo --workers 1 --rate-limit 1000000 --event-rate 0 ...", flush=True)
            demo = _start_demo(work, info_file, args.permits)
        info = json.loads(info_file.read_text())
        api_pid = int(info["pids"]["api"])
        codes, trust = _mint(info, WARM_CODES + args.rounds * args.round_codes)
        signed, signature, public_key = signed_parts(codes[0], trust)
        vector = work / "anchor-vector.json"
        vector.write_text(json.dumps({"signed_hex": signed.hex(), "signature_hex": signature.hex(),
                                      "public_key_hex": public_key.hex()}))
        port = free_port()
        anchor = Child("anchor", [sys.executable, "-m", "verifier.run.serve",
                                  "benchmarks.api_support.anchor_app:create_anchor_app", str(port), "1"],
                       work / "anchor.log", env={**os.environ, ANCHOR_ENV: str(vector),
                                                 "PYTHONPATH": str(HERE.parent)}).start()
        anchor_url = f"http://127.0.0.1:{port}/verify"
        api_url = info["url"] + "/v1/verify/qr"
        headers = {"Authorization": f"Bearer {info['keys']['exit_entry']}"}

        def body(code: str) -> bytes:
            return msgspec.json.encode({"qr": code, "terminal": "outside-1"})

        wait_until(lambda: _posts(anchor_url, body(codes[0]), {}), timeout_s=60, what="the anchor",
                   abort=anchor.check_running)
        first = httpx.post(api_url, content=body(codes[0]), headers=headers | {"Content-Type": "application/json"})
        assert first.json()["result"] == "VALID", first.text
        anchor_pid = anchor.pid
        assert anchor_pid is not None

        # Warm-up: the worker's near-cache then holds the demo's permits (as in service, where the
        # codes are new but the permits come back), and both servers have run their code paths.
        warm = [body(c) for c in codes[1:WARM_CODES]]
        run_load(anchor_url, warm, {}, connections=args.connections, seconds=args.warm_s)
        run_load(api_url, warm, headers, connections=args.connections, seconds=args.warm_s)
        rounds = []
        print(f"load: {'wrk -t1' if wrk_available() else 'python'}, {args.connections} connections, "
              f"{args.rounds} interleaved rounds of {args.round_s:g} s; load average {os.getloadavg()[0]:.2f}")
        print(f"{'round':>5} {'anchor req/s':>13} {'api req/s':>10} {'ratio':>6} {'anchor us CPU':>14} "
              f"{'api us CPU':>11} {'api-anchor':>11}")
        for i in range(args.rounds):
            bodies = [body(c) for c in codes[WARM_CODES + i * args.round_codes: WARM_CODES + (i + 1) * args.round_codes]]
            cpu = cpu_seconds(anchor_pid)
            anchor_run = run_load(anchor_url, bodies, {}, connections=args.connections, seconds=args.round_s)
            anchor_us = (cpu_seconds(anchor_pid) - cpu) / max(anchor_run.requests, 1) * 1e6
            cpu = cpu_seconds(api_pid)
            api_run = run_load(api_url, bodies, headers, connections=args.connections, seconds=args.round_s)
            api_us = (cpu_seconds(api_pid) - cpu) / max(api_run.requests, 1) * 1e6
            if api_run.requests > len(bodies):
                raise SystemExit(f"round {i + 1} sent {api_run.requests} requests for {len(bodies)} codes: "
                                 "raise --round-codes (every request must be a new code)")
            if anchor_run.errors or api_run.errors:
                raise SystemExit(f"errors: anchor {anchor_run}, api {api_run}")
            ratio = api_run.requests_per_s / anchor_run.requests_per_s
            rounds.append({"anchor": anchor_run.as_dict(), "api": api_run.as_dict(), "ratio": round(ratio, 3),
                           "anchor_cpu_us_per_request": round(anchor_us, 1),
                           "api_cpu_us_per_request": round(api_us, 1)})
            print(f"{i + 1:>5} {anchor_run.requests_per_s:>13.0f} {api_run.requests_per_s:>10.0f} {ratio:>6.3f} "
                  f"{anchor_us:>14.1f} {api_us:>11.1f} {api_us - anchor_us:>11.1f}", flush=True)
        ratios = [r["ratio"] for r in rounds]
        above = [r["api_cpu_us_per_request"] - r["anchor_cpu_us_per_request"] for r in rounds]
        summary = {
            "command": "python3 -m benchmarks.outside_check " + " ".join(sys.argv[1:]),
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "load_generator": "wrk -t1" if wrk_available() else "python",
            "connections": args.connections,
            "rounds": rounds,
            "median_ratio": round(statistics.median(ratios), 3),
            "min_ratio": min(ratios),
            "max_ratio": max(ratios),
            "median_api_cpu_us_above_anchor": round(statistics.median(above), 1),
            "load_average_at_end": os.getloadavg(),
        }
        print(f"ratio api/anchor: median {summary['median_ratio']:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
              f"API CPU above the anchor: median {summary['median_api_cpu_us_above_anchor']:.1f} us a request")
        if args.out:
            args.out.write_text(json.dumps(summary, indent=2) + "\n")
        return 0
    finally:
        if anchor is not None:
            anchor.stop()
        if demo is not None:
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
        shutil.rmtree(work, ignore_errors=True)


def _posts(url: str, content: bytes, headers: dict[str, str]) -> bool:
    try:
        return httpx.post(url, content=content, headers=headers | {"Content-Type": "application/json"},
                          timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
