"""The audit's flush and its size: the chained, written-through flush beside main's flush it replaced.

    python3 -m pytest benchmarks/test_bench_audit.py -p no:cacheprovider -s

Writes ``benchmarks/results/audit.json``. Method (one run, one machine, one private
``redis-server`` as the store, AOF ``appendfsync always`` as the store of record runs):

- Records: what a worker appends per answer (``AuditLog.record``): QR scans with a
  terminal and a permit number (the common case), and for the record a bulk look-up
  naming 1,000 permits.
- Anchor: the flush before the chain (main before this change): the same records as
  JSON batches of up to 1,000, one pipelined ``EVAL`` each that appends the batch to
  the stream and writes the per-permit "who verified me" index (:data:`MAIN_WRITE`, the
  script main ran). Subject: ``AuditLog``'s flush: chain (an id and a SHA-256 per
  record), write through to the shard's file and fsync, then the idempotent ``APPEND``
  script per batch (the same index written in it). Both flush 5,000
  records a round (20 s of one worker at 250 answers/s, or 0.25 s at 20,000/s), 15
  interleaved rounds, median; wall time and this process's CPU time per record
  (the worker's share; the fsync and Redis's own time are not the worker's CPU).
  The chain alone (``Chain.extend``) is timed apart.
- Size: the stream's ``MEMORY USAGE`` (all samples) per record, the store's whole
  ``used_memory`` growth per record (the stream and the per-permit "who verified me"
  index written with it; here 100,000 permits scanned once each, the index's costliest
  case), the audit file's bytes per record and the store's AOF bytes per record (no
  rewrite meanwhile), after 100,000 scans with their checkpoints, from which the
  README's days-per-GB figures are computed.

Caveat: 2 shared cores; the fsync's time depends on the disk under the state folder.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from verifier.api.audit.chain import Chain, Link
from verifier.api.audit.history import INDEX_BODY, HistoryPolicy
from verifier.api.audit.log import AuditLog
from verifier.api.audit.stream import AUDIT_STREAM
from verifier.lib.redis_client import async_client
from verifier.lib.redis_server import EmbeddedRedis

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "audit.json"
ROUND = 5_000
ROUNDS = 15
SIZE_RECORDS = 100_000
MAIN_WRITE = """
redis.call('XADD', KEYS[1], '*', 'r', ARGV[1])
local records = cjson.decode(ARGV[1])
local retention, cap, skip = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
""" + INDEX_BODY + """
return indexed
"""
"""main's audit write before the chain: append a batch and index its permits, in one call."""


def scan_record(audit: AuditLog, i: int) -> None:
    audit.record(key_id="a1b2c3d4e5f6", role="exit_entry", kind="qr", result="VALID", terminal=f"PVG-T2-desk-{i % 40:02d}",
                 profile="WP1", permit_number=f"WP31000020250{i % 100000:05d}")


def plain_batches(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(records[i:i + 1000]) for i in range(0, len(records), 1000)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    # no AOF rewrite while measuring: the file's growth is then what the audit wrote
    server = EmbeddedRedis(tmp_path_factory.mktemp("audit-store"), persist=True, appendfsync="always",
                           extra_args=("--auto-aof-rewrite-percentage", "0"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, Any]]:
    figures: dict[str, Any] = {
        "command": "python3 -m pytest benchmarks/test_bench_audit.py -p no:cacheprovider -s",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": os.getloadavg()},
        "method": (__doc__ or "").split("Method")[1].split("Caveat:")[0].strip(),
    }
    yield figures
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {OUT}")


def test_flush_cost_against_mains_flush(store: EmbeddedRedis, tmp_path: Path,
                                                 results: dict[str, Any]) -> None:
    async def run() -> dict[str, Any]:
        client = async_client(store.url)
        try:
            audit = AuditLog.open(client, tmp_path / "audit")
            plain: list[tuple[float, float]] = []
            chained: list[tuple[float, float]] = []
            chain_only: list[float] = []
            for round_ in range(ROUNDS):
                # the anchor: the records as the request path leaves them, batched and XADDed
                records = []
                for i in range(ROUND):
                    scan_record(audit, i)
                records, audit._buffer = audit._buffer, []
                wall, cpu = time.perf_counter(), time.process_time()
                policy = HistoryPolicy()
                async with client.pipeline(transaction=False) as pipe:
                    for batch in plain_batches(records):
                        pipe.eval(MAIN_WRITE, 1, "bench:main", batch, policy.retention_ms, policy.cap, "")
                    await pipe.execute()
                plain.append(((time.perf_counter() - wall) / ROUND, (time.process_time() - cpu) / ROUND))
                # the chain alone
                chain = Chain(Link.start("bench-w0"))
                copies = [dict(r) for r in records]
                cpu = time.process_time()
                chain.extend(copies)
                chain_only.append((time.process_time() - cpu) / ROUND)
                # the subject
                for i in range(ROUND):
                    scan_record(audit, i)
                wall, cpu = time.perf_counter(), time.process_time()
                taken = await audit.flush()
                chained.append(((time.perf_counter() - wall) / ROUND, (time.process_time() - cpu) / ROUND))
                assert taken >= ROUND, (round_, taken)
            await audit.close()
            return {"plain": plain, "chained": chained, "chain_only": chain_only}
        finally:
            await client.aclose()

    runs = asyncio.run(run())

    def med(values: list[float]) -> float:
        return statistics.median(values)

    plain_wall, plain_cpu = med([w for w, _ in runs["plain"]]), med([c for _, c in runs["plain"]])
    chained_wall, chained_cpu = med([w for w, _ in runs["chained"]]), med([c for _, c in runs["chained"]])
    figures = {
        "records_per_round": ROUND,
        "rounds": ROUNDS,
        "main_flush_us_per_record": {"wall": round(plain_wall * 1e6, 2), "cpu": round(plain_cpu * 1e6, 2)},
        "chained_flush_us_per_record": {"wall": round(chained_wall * 1e6, 2), "cpu": round(chained_cpu * 1e6, 2)},
        "chain_alone_us_per_record_cpu": round(med(runs["chain_only"]) * 1e6, 2),
        "ratio_chained_to_main": {"wall": round(chained_wall / plain_wall, 2), "cpu": round(chained_cpu / plain_cpu, 2)},
    }
    results["flush"] = figures
    print("\naudit flush per record:", json.dumps(figures, indent=1))
    assert chained_cpu > 0 and plain_cpu > 0


def test_bytes_per_record(store: EmbeddedRedis, tmp_path: Path, results: dict[str, Any]) -> None:
    client_sync = store.client()
    client_sync.flushall()
    client_sync.execute_command("BGREWRITEAOF")  # start from a compact AOF
    while client_sync.info("persistence")["aof_rewrite_in_progress"]:
        time.sleep(0.05)
    used_before = client_sync.info("memory")["used_memory"]
    aof_dir = store.state_dir / f"appendonly-{store.port}"

    def aof_bytes() -> int:
        return sum(p.stat().st_size for p in aof_dir.iterdir()) if aof_dir.is_dir() else 0

    aof_before = aof_bytes()

    async def run() -> AuditLog:
        client = async_client(store.url)
        try:
            audit = AuditLog.open(client, tmp_path / "size")
            for start in range(0, SIZE_RECORDS, ROUND):
                for i in range(start, start + ROUND):
                    scan_record(audit, i)
                await audit.flush(checkpoint=True)
            await audit.close()
            return audit
        finally:
            await client.aclose()

    audit = asyncio.run(run())
    try:
        memory = client_sync.memory_usage(AUDIT_STREAM, samples=0)
        used = client_sync.info("memory")["used_memory"] - used_before
        records = sum(len(orjson.loads(f[b"r"])) for _i, f in client_sync.xrange(AUDIT_STREAM))
    finally:
        client_sync.close()
    files = sum(p.stat().st_size for p in (tmp_path / "size").rglob("*.ndjson"))
    lookup = Chain(Link.start("bench-w0")).extend([{
        "t": 1, "key": "a1b2c3d4e5f6", "role": "partner", "terminal": "", "kind": "lookup", "profile": "",
        "pn": ",".join(f"WP31000020250{i:05d}" for i in range(1000)), "result": "found=1000", "by": "pn",
        "asked": "1000", "missing": "0"}])[0]
    figures = {
        "records": records,
        "redis_stream_bytes_per_record": round(memory / records, 1),
        "store_used_memory_bytes_per_record_with_who_verified_me": round(used / records, 1),
        "audit_file_bytes_per_record": round(files / records, 1),
        "store_aof_bytes_per_record": round((aof_bytes() - aof_before) / records, 1),
        "a_1000_permit_lookup_record_bytes": len(lookup),
        "shard": audit.shard,
    }
    per_day_at_100_per_s = 100 * 86_400
    figures["days_in_10_gb_of_stream_at_100_records_per_s"] = round(
        10e9 / (figures["redis_stream_bytes_per_record"] * per_day_at_100_per_s), 1)
    results["size"] = figures
    print("\naudit size:", json.dumps(figures, indent=1))
    assert records >= SIZE_RECORDS
