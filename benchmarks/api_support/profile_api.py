"""Per-request server CPU of the API, in process, with an optional profile.

    python3 -m benchmarks.api_support.profile_api [qr-cold|qr-repeat|lookup|anchor|ab|all] [--profile] [-n N]

A private Redis (``EmbeddedRedis``) holds a real index of 20,000 simulator permits,
the trust list and API keys; the app is ``create_app`` with its lifespan running, and
each request is one ASGI call (scope, body, response) in one event loop: the
figure is the app's own cost, without uvicorn and httptools (which the anchor pays
alike). ``anchor`` times the bench's bare Litestar endpoint the same way. With
``--profile`` the run is under cProfile and the top functions are printed.

``ab``: the API's cold path and the anchor in the same event loop, in alternating
blocks of 100 requests (so that a noisy machine slows both alike), each block's
process CPU read on its own, and a third block of the API with its hot route taken
out (Litestar's layers, as before issue 15); printed: the median CPU per request of
each and the differences, the app's own cost above the anchor. ``--profile`` with ``ab`` profiles
the API's blocks only, with CPU time as cProfile's clock.

A tool for finding where the time goes, not a benchmark of record
(``benchmarks/test_bench_api.py`` is that).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import io
import json
import os
import pstats
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson

PERMITS = 20_000
CST = dt.timezone(dt.timedelta(hours=8))


async def _call(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 0
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                                         (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }
    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[Any]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    message = await outbox.get()
    assert message["type"] == "lifespan.startup.complete", message
    return task, inbox


async def _time(label: str, fn: Any, n: int, profile: bool) -> None:
    gc.collect()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    cpu = time.process_time()
    await fn(n)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - started
    if profiler:
        profiler.disable()
    print(f"{label}: {n} requests, {wall / n * 1e6:.1f} us wall, {cpu / n * 1e6:.1f} us CPU a request")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=["qr-cold", "qr-cold-miss", "qr-repeat", "lookup", "anchor", "ab", "all"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("-n", type=int, default=0)
    args = parser.parse_args()

    from verifier.api.app import create_app
    from verifier.api.auth.keys import add_api_key
    from verifier.index import IndexWriter
    from verifier.index.trust_store import save_trust_list_sync
    from verifier.lib.redis_client import async_client, sync_client
    from verifier.lib.redis_server import EmbeddedRedis
    from verifier.lib.settings import Settings
    from verifier.upstream.simulator import Upstream

    state = Path(tempfile.mkdtemp(prefix="pv-profile-"))
    server = EmbeddedRedis(state, persist=False)
    server.start()
    try:
        twin = Upstream.create(permits=PERMITS, seed=1)
        records = [twin.record_at(i) for i in range(twin.count)]
        sync = sync_client(server.url)
        writer = IndexWriter(sync)
        fence = writer.acquire_leadership("profile", ttl_s=3600)
        load = writer.begin_snapshot(fence, expected_count=len(records))
        load.add(records)
        load.commit(1, "profile-feed", upstream_time=time.time())
        writer.heartbeat(1, time.time(), fence)
        save_trust_list_sync(sync, orjson.dumps(twin.trust_list()))
        today = dt.datetime.now(CST).date().isoformat()
        usable = [r for r in records if r.status == "active" and r.vf <= today < r.vt]
        wanted = max(args.n, 3000) + 10 + (2 * (args.n or 20_000) if args.what == "ab" else 0)
        now = int(time.time())
        codes = [twin.mint_wp1(usable[i % len(usable)].pn, iat=now - 60 - i // len(usable))[0] for i in range(wanted)]

        async def run() -> None:
            redis = async_client(server.url)
            tokens = {}
            for role in ("exit_entry", "social_insurance"):
                tokens[role] = (await add_api_key(redis, role, "profile"))[1]
            app = create_app(Settings(redis_url=server.url, rate_limit_per_s=1e9, rate_limit_burst=10**9))
            task, inbox = await _lifespan(app)
            runtime = app.state.runtime
            while not runtime.subscribed.is_set():
                await asyncio.sleep(0.01)
            qr_headers = [(b"authorization", f"Bearer {tokens['exit_entry']}".encode())]
            lookup_headers = [(b"authorization", f"Bearer {tokens['social_insurance']}".encode())]
            bodies = [msgspec.json.encode({"qr": c, "terminal": "bench-1"}) for c in codes]
            status, answer = await _call(app, "POST", "/v1/verify/qr", bodies[-1], qr_headers)
            assert status == 200 and json.loads(answer)["result"] == "VALID", answer
            rng = random.Random(5)
            lookups = [msgspec.json.encode({"by": "pn", "ids": rng.sample([r.pn for r in usable], 1000)})
                       for _ in range(20)]
            status, answer = await _call(app, "POST", "/v1/permits/lookup", lookups[0], lookup_headers)
            assert status == 200 and len(json.loads(answer)["found"]) == 1000, answer[:300]

            async def many(path: str, chosen: list[bytes], headers: Any, n: int) -> None:
                for i in range(n):
                    status, _ = await _call(app, "POST", path, chosen[i % len(chosen)], headers)
                    assert status == 200, status

            jobs = []
            if args.what == "ab":
                await many("/v1/verify/qr", bodies[:200], qr_headers, 200)
                await runtime.index.permits([r.pn for r in usable], time.time())
                await _ab(app, bodies[200:-1], qr_headers, codes[0], twin.trust_list(), state, args)
            if args.what in ("qr-cold", "qr-cold-miss", "all"):
                cold = bodies[:-1]
                await many("/v1/verify/qr", cold[:200], qr_headers, 200)  # warm the code paths
                if args.what != "qr-cold-miss":
                    # as in the benchmark's later rounds: new codes for permits the near-cache holds
                    await runtime.index.permits([r.pn for r in usable], time.time())
                jobs.append((args.what if args.what != "all" else "qr-cold",
                             lambda n: many("/v1/verify/qr", cold[200:], qr_headers, n),
                             min(args.n or 2500, len(cold) - 200)))
            if args.what in ("qr-repeat", "all"):
                jobs.append(("qr-repeat", lambda n: many("/v1/verify/qr", bodies[-1:], qr_headers, n), args.n or 5000))
            if args.what in ("lookup", "all"):
                jobs.append(("lookup-1000", lambda n: many("/v1/permits/lookup", lookups, lookup_headers, n),
                             args.n or 200))
            for label, fn, n in jobs:
                await _time(label, fn, n, args.profile)
            await inbox.put({"type": "lifespan.shutdown"})
            await task
            await redis.aclose()

        asyncio.run(run())
        if args.what in ("anchor", "all"):
            asyncio.run(_anchor(codes[0], twin.trust_list(), state, args))
    finally:
        server.stop()


async def _ab(api: Any, bodies: list[bytes], headers: Any, code: str, trust: dict[str, Any], state: Path,
              args: Any) -> None:
    """Alternating blocks of the API's cold path (a new code each request) and of the anchor."""
    import statistics

    from benchmarks.api_support.anchor_app import ANCHOR_ENV, create_anchor_app
    from benchmarks.api_support.cose_parts import signed_parts

    signed, signature, public_key = signed_parts(code, trust)
    vector = state / "anchor.json"
    vector.write_text(json.dumps({"signed_hex": signed.hex(), "signature_hex": signature.hex(),
                                  "public_key_hex": public_key.hex()}))
    os.environ[ANCHOR_ENV] = str(vector)
    anchor = create_anchor_app()
    task, inbox = await _lifespan(anchor)
    anchor_body = msgspec.json.encode({"qr": code, "terminal": "bench-1"})
    block = 100
    n = min(args.n or 20_000, len(bodies) // 2) // block * block
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    api_us: list[float] = []
    full_us: list[float] = []
    anchor_us: list[float] = []
    hot_route = api.state.hot_route
    gc.collect()
    for start in range(0, n, block):
        cpu = time.process_time()
        for _ in range(block):
            status, _ = await _call(anchor, "POST", "/verify", anchor_body, [])
            assert status == 200
        anchor_us.append((time.process_time() - cpu) / block * 1e6)
        if profiler:
            profiler.enable()
        cpu = time.process_time()
        for body in bodies[2 * start:2 * start + block]:
            status, _ = await _call(api, "POST", "/v1/verify/qr", body, headers)
            assert status == 200
        api_us.append((time.process_time() - cpu) / block * 1e6)
        if profiler:
            profiler.disable()
        await asyncio.sleep(0)  # the API's background tasks (audit and metrics flush) run between blocks too
        # the same app with the hot route taken out (verifier/api/qr/hot_route.py): Litestar's layers
        hot_route.enabled = False
        cpu = time.process_time()
        for body in bodies[2 * start + block:2 * start + 2 * block]:
            status, _ = await _call(api, "POST", "/v1/verify/qr", body, headers)
            assert status == 200
        full_us.append((time.process_time() - cpu) / block * 1e6)
        hot_route.enabled = True
        await asyncio.sleep(0)
    a, f, b = statistics.median(api_us), statistics.median(full_us), statistics.median(anchor_us)
    print(f"ab: {n} requests each, blocks of {block}, median us of CPU a request: anchor {b:.1f}; "
          f"API cold {a:.1f} ({a - b:+.1f}); through Litestar's layers (hot route out) {f:.1f} ({f - b:+.1f}) "
          f"(means {statistics.fmean(anchor_us):.1f} / {statistics.fmean(api_us):.1f} / {statistics.fmean(full_us):.1f})")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
        print(out.getvalue())
    await inbox.put({"type": "lifespan.shutdown"})
    await task


async def _anchor(code: str, trust: dict[str, Any], state: Path, args: Any) -> None:
    from benchmarks.api_support.anchor_app import ANCHOR_ENV, create_anchor_app
    from benchmarks.api_support.cose_parts import signed_parts

    signed, signature, public_key = signed_parts(code, trust)
    vector = state / "anchor.json"
    vector.write_text(json.dumps({"signed_hex": signed.hex(), "signature_hex": signature.hex(),
                                  "public_key_hex": public_key.hex()}))
    os.environ[ANCHOR_ENV] = str(vector)
    app = create_anchor_app()
    task, inbox = await _lifespan(app)
    body = msgspec.json.encode({"qr": code, "terminal": "bench-1"})
    async def many(n: int) -> None:
        for _ in range(n):
            status, _ = await _call(app, "POST", "/verify", body, [])
            assert status == 200

    await many(200)
    await _time("anchor", many, args.n or 5000, args.profile)
    await inbox.put({"type": "lifespan.shutdown"})
    await task


if __name__ == "__main__":
    main()
