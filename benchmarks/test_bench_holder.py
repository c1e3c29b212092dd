"""``GET /v1/holder/verifications`` ("who verified me") against a bare ZRANGE, in one run.

    python3 -m pytest benchmarks/test_bench_holder.py -p no:cacheprovider -s

Writes ``benchmarks/results/holder.json``.

Method. The whole service runs as ``verifier demo`` would (private Redis, the upstream
simulator with 2,000 permits and no events, the sync job, the API on one uvicorn
worker). The audit is filled through the API's own write path (``AuditLog.flush``: the
Lua call that appends each batch to ``pv:audit`` and indexes it per permit) with
1,000,000 records: 10,000 scans of one holder's permit and 990,000 of 99,000 other
permits (10 each), from 20 API keys with registered terminals. The holder signs in with
an ES1 code the simulator issued. Measured in this process, one keep-alive connection
each, the median of ``ROUNDS`` timed calls after a warm-up:

- a page of 50 through HTTP (session check, trim-and-read Lua call, organisation and
  terminal names, audit record) against the anchor: a bare redis-py ``ZRANGE ... BYSCORE
  REV LIMIT 0 50 WITHSCORES`` of the same entries;
- the whole list (10,000 entries) paged by cursor at 200 a page, against bare ZRANGE
  pages of 200 over the same key.

Also recorded: Redis ``used_memory`` added by the 1,000,000 records, split into the
audit stream (``MEMORY USAGE``) and the per-permit index (the rest).

Caveats: a shared 2-core machine; the ratios are what to read. The HTTP side pays
the client's own httpx time too (~100 µs a request), the anchor pays redis-py's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from verifier.api.audit.history import history_key
from verifier.api.audit.log import AUDIT_STREAM, AuditLog
from verifier.api.auth.keys import add_api_key
from verifier.api.auth.terminals import register_terminal
from verifier.lib.redis_client import async_client
from verifier.run.demo import DemoOptions, DemoStack, create_demo_keys

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "holder.json"
PERMITS = 2_000
SEED = 3
TOTAL = 1_000_000
HOLDER_ENTRIES = 10_000
OTHERS = 99_000
KEYS = 20
PAGE = 50
WALK_PAGE = 200
ROUNDS = 300
CST = dt.timezone(dt.timedelta(hours=8))


def _median_s(call: Callable[[], Any], rounds: int, warm: int = 20) -> float:
    for _ in range(warm):
        call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _fill(redis_url: str, holder_pn: str) -> dict[str, int]:
    """1,000,000 audit records through AuditLog.flush; the holder's permit gets 10,000."""
    client = async_client(redis_url)
    try:
        keys = []
        for n in range(KEYS):
            organisation = f"Agency {n}"
            key_id, _token = await add_api_key(client, "exit_entry", f"desk key {n}", organisation=organisation)
            await register_terminal(client, organisation, f"GATE-{n}", f"Gate {n}", f"Hall {n}")
            keys.append(key_id)
        audit = AuditLog(client)
        now_ms = int(time.time() * 1000) - TOTAL
        made = 0
        for i in range(TOTAL):
            pn = holder_pn if i % (TOTAL // HOLDER_ENTRIES) == 0 else f"WP9{i % OTHERS:015d}"
            k = i % KEYS
            audit.record(key_id=keys[k], role="exit_entry", kind="qr", result="VALID", terminal=f"GATE-{k}",
                         profile="WP1", permit_number=pn)
            audit._buffer[-1]["t"] = now_ms + i  # type: ignore[index]  # spread over the last ~17 minutes
            made += 1
            if len(audit) >= 20_000:
                await audit.flush()
        await audit.flush()
        return {"records": made, "written": audit.written}
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, Any]]:
    figures: dict[str, Any] = {
        "command": "python3 -m pytest benchmarks/test_bench_holder.py -p no:cacheprovider -s",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": os.getloadavg()},
        "method": (__doc__ or "").split("Method.")[1].split("Caveats:")[0].strip(),
    }
    yield figures
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


def test_who_verified_me_against_a_bare_zrange(tmp_path_factory: pytest.TempPathFactory,
                                                results: dict[str, Any]) -> None:
    stack = DemoStack(DemoOptions(state_dir=tmp_path_factory.mktemp("holder-bench"), port=0, workers=1,
                                  permits=PERMITS, seed=SEED, event_rate=0.0, rate_limit_per_s=1e9))
    with stack:
        tokens = {role: k["token"] for role, k in create_demo_keys(stack.store_url, ["91110000100000000A"]).items()}
        today = dt.datetime.now(CST).date().isoformat()
        snapshot = httpx.get(f"{stack.upstream_url}/snapshot", params={"format": "ndjson"}, timeout=60).text
        rows = [json.loads(line) for line in snapshot.splitlines() if line.startswith("[")]
        holder_pn = next(r[0] for r in rows if r[9] == "active" and r[6] <= today < r[7] and r[10] and r[11])
        anchor = redis.Redis.from_url(stack.store_url)  # the audit and its index: the store of record
        try:
            before = anchor.info("memory")["used_memory"]
            started = time.perf_counter()
            filled = asyncio.run(_fill(stack.store_url, holder_pn))
            fill_s = time.perf_counter() - started
            used = anchor.info("memory")["used_memory"] - before
            stream = anchor.memory_usage(AUDIT_STREAM, samples=0) or 0
            key = history_key(holder_pn)
            assert anchor.zcard(key) == HOLDER_ENTRIES

            code = httpx.post(f"{stack.upstream_url}/issue/es1", json={"pn": holder_pn}, timeout=10).json()["qr"]
            platform_headers = {"Authorization": f"Bearer {tokens['essc_platform']}"}
            session = httpx.post(f"{stack.api_url}/v1/holder/session", json={"code": code}, headers=platform_headers,
                                 timeout=10)
            assert session.status_code == 200, session.text
            headers = {**platform_headers, "X-Holder-Token": session.json()["token"]}
            time.sleep(1.0)  # the sign-in's own audit record is flushed within 0.25 s: the list is then fixed
            with httpx.Client(base_url=stack.api_url, headers=headers, timeout=10) as client:
                first = client.get("/v1/holder/verifications", params={"limit": PAGE}).json()
                assert len(first["items"]) == PAGE and first["next"]
                assert first["items"][0]["kind"] == "sign_in"
                scan = first["items"][1]
                assert scan["organisation"].startswith("Agency ") and scan["terminal"].startswith("Gate "), scan

                api_page_s = _median_s(lambda: client.get("/v1/holder/verifications", params={"limit": PAGE}), ROUNDS)
                zrange_page_s = _median_s(
                    lambda: anchor.zrange(key, "+inf", "-inf", byscore=True, desc=True, offset=0, num=PAGE,
                                          withscores=True), ROUNDS)

                def walk_api() -> int:
                    seen, cursor = 0, None
                    while True:
                        params: dict[str, Any] = {"limit": WALK_PAGE}
                        if cursor:
                            params["cursor"] = cursor
                        page = client.get("/v1/holder/verifications", params=params).json()
                        seen += len(page["items"])
                        cursor = page["next"]
                        if cursor is None:
                            return seen

                def walk_zrange() -> int:
                    seen, top = 0, "+inf"
                    while True:
                        page = anchor.zrange(key, top, "-inf", byscore=True, desc=True, offset=0, num=WALK_PAGE,
                                             withscores=True)
                        seen += len(page)
                        if len(page) < WALK_PAGE:
                            return seen
                        top = f"({int(page[-1][1])}"

                # the sign-in is the 10,001st: the cap (10,000) keeps the newest, and the first read trimmed to it
                assert walk_api() == walk_zrange() == HOLDER_ENTRIES
                api_walk_s = _median_s(walk_api, 5, warm=1)
                zrange_walk_s = _median_s(walk_zrange, 5, warm=1)
        finally:
            anchor.close()

    results["fill"] = {**filled, "seconds": round(fill_s, 1), "records_per_s": round(filled["records"] / fill_s)}
    results["memory"] = {
        "used_memory_added_bytes": used,
        "audit_stream_bytes": stream,
        "per_permit_index_bytes": used - stream,
        "per_permit_index_bytes_per_entry": round((used - stream) / TOTAL, 1),
        "permits_indexed": OTHERS + 1,
        "distribution": f"{HOLDER_ENTRIES} entries for one permit, {TOTAL - HOLDER_ENTRIES} over {OTHERS} others",
    }
    results["page_of_50"] = {
        "api_median_ms": round(api_page_s * 1000, 3), "bare_zrange_median_ms": round(zrange_page_s * 1000, 3),
        "ratio_api_pages_per_s_to_zrange": round(zrange_page_s / api_page_s, 3),
    }
    results["walk_10000_by_200"] = {
        "api_median_ms": round(api_walk_s * 1000, 1), "bare_zrange_median_ms": round(zrange_walk_s * 1000, 1),
        "ratio_api_to_zrange": round(zrange_walk_s / api_walk_s, 3),
    }
    print(json.dumps({k: results[k] for k in ("fill", "memory", "page_of_50", "walk_10000_by_200")}, indent=1))
