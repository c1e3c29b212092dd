"""Notification benchmarks: deliveries per second, and the delay from an upstream change
to its delivery beside the sync job's own change latency.

    python3 -m pytest benchmarks/test_bench_notify.py -p no:cacheprovider -s

Writes ``benchmarks/results/notify.json``. Method (one run, one machine, each figure
beside its anchor of the same run):

- Every part is a process of its own, as in production: the upstream simulator
  (``verifier upstream``, 20,000 permits), the sync job (``verifier sync``, default
  poll 0.2 s), one notifier (``verifier notify``), and a receiver (``verifier notify
  receiver``: checks both signatures of every message, records its arrival); the index
  and the store of record are two private Redis servers without persistence. One
  subscription, an admin's ``["*"]``: one message per change. 2 cores shared by all.
- Delay: the simulator makes 1,000 random changes a second for ``SECONDS`` s (after a
  warm-up); each change's delay is its arrival at the receiver minus its upstream time
  (the same machine's clock). Anchor: the sync job's own change latency for the same
  changes, the change-stream entry's time (Redis's clock when the APPLY script ran)
  minus the upstream time. Target: delay p99 < 2 s at 1,000 changes/s.
- Deliveries per second: a backlog of ``BACKLOG`` queued messages drained by the
  notifier (fan-out, signing, HTTP, acknowledgement). Anchor: the same number of POSTs
  of the same bodies, to the same receiver, from a bare loop over the same HTTP client
  (h11 on asyncio streams, 16 connections), no Redis: the transport's own ceiling.

Caveat: a noisy shared machine (the load average is recorded): on 2 cores the load
generator, Redis, the sync job, the notifier and the receiver compete for the CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from verifier.index.change_stream import decode_entry, entry_millis
from verifier.index.keys import KeyLayout
from verifier.index.writer import IndexWriter
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis, free_port
from verifier.lib.settings import Settings
from verifier.notify.delivery import Deliverer
from verifier.notify.events import CHANGE_TYPES
from verifier.notify.urls import AddressPolicy

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "results" / "notify.json"
RATE = 1000
SECONDS = int(os.environ.get("BENCH_NOTIFY_SECONDS", "20"))
WARMUP_S = 3
BACKLOG = 10_000
RESULTS: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
sys.path.insert(0, str(REPO))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class Stack:
    """Redis x2, simulator, sync job, notifier, receiver: processes, stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.index = EmbeddedRedis(tmp / "index", persist=False).start()
        self.store = EmbeddedRedis(tmp / "store", persist=False).start()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.upstream = f"http://127.0.0.1:{free_port()}"
        self.receiver = f"http://127.0.0.1:{free_port()}/hook"
        self.record = tmp / "arrivals.jsonl"
        self.settings = Settings(redis_url=self.index.url, store_url=self.store.url, notify_partitions=16)
        self.env = {**os.environ, **self.settings.to_env(), "UPSTREAM_URL": self.upstream}

    def spawn(self, name: str, *args: str) -> None:
        with open(self.tmp / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            self.children[name] = subprocess.Popen([sys.executable, "-m", "verifier", *args], cwd=REPO,
                                                   env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL)

    def stop(self, name: str) -> None:
        process = self.children.pop(name, None)
        if process is not None:
            process.terminate()
            process.wait(30)

    def close(self) -> None:
        for name in list(self.children):
            self.stop(name)
        self.index.stop()
        self.store.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.notify.support import live_key, subscribe, wait_for

    running = Stack(tmp_path_factory.mktemp("bench-notify"))
    try:
        port = running.upstream.rsplit(":", 1)[1]
        running.spawn("upstream", "upstream", "--port", port, "--permits", "20000", "--seed", "13")
        wait_for(lambda: _ok(running.upstream + "/admin/state"), 120, "the simulator", interval=0.5)
        running.spawn("receiver", "notify", "receiver", "--port", running.receiver.rsplit(":", 1)[1].split("/")[0],
                      "--record", str(running.record))
        running.spawn("sync", "sync")
        index = sync_client(running.index.url)
        wait_for(lambda: IndexWriter(index).state().ready, 120, "the first load", interval=0.5)
        index.close()
        store = sync_client(running.store.url)
        live_key(store)
        store.close()
        running.subscription = subscribe(running.store.url, running.receiver)  # type: ignore[attr-defined]
        yield running
    finally:
        running.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).is_success
    except httpx.HTTPError:
        return False


def _arrivals(stack: Stack) -> list[dict[str, Any]]:
    """The changes' messages that arrived (the admin's "*" also has expiry reminders)."""
    if not stack.record.exists():
        return []
    arrivals = [json.loads(line) for line in stack.record.read_text().splitlines() if line.strip()]
    return [a for a in arrivals if a["type"] in CHANGE_TYPES.values()]


@pytest.mark.parametrize("processes", [1, 2])
def test_delay_at_1000_changes_per_second(stack: Stack, processes: int) -> None:
    from tests.notify.support import wait_for

    index = sync_client(stack.index.url)
    for n in range(processes):
        stack.spawn(f"notify-{n}", "notify")
    admin = httpx.Client(base_url=stack.upstream, timeout=30)
    time.sleep(3)
    admin.post("/admin/event-rate", json={"rate": RATE}).raise_for_status()
    time.sleep(WARMUP_S)
    window_start = time.time()
    first_seq = admin.get("/admin/state").json()["seq"]
    time.sleep(SECONDS)
    last_seq = admin.get("/admin/state").json()["seq"]
    window_end = time.time()
    admin.post("/admin/event-rate", json={"rate": 0}).raise_for_status()
    wanted = set(range(first_seq + 1, last_seq + 1))
    wait_for(lambda: wanted <= {a["seq"] for a in _arrivals(stack)}, 300,
             "every change of the window delivered", interval=1.0)
    first_arrival: dict[int, dict[str, Any]] = {}
    for arrival in _arrivals(stack):
        if arrival["seq"] in wanted and arrival["seq"] not in first_arrival:
            first_arrival[arrival["seq"]] = arrival
    delays = [a["arrived"] - a["event_time"] for a in first_arrival.values()]
    applied: list[float] = []
    for entry_id, fields in index.xrange(KeyLayout().changelog, min="-", max="+"):
        entry = decode_entry(entry_id, fields)
        if entry.is_change and entry.seq in wanted:
            applied.append(entry_millis(entry.id) / 1000 - entry.time)
    for n in range(processes):
        stack.stop(f"notify-{n}")
    index.close()
    admin.close()
    RESULTS[f"delay_{processes}_notifier{'s' if processes > 1 else ''}"] = {
        "changes": len(wanted), "rate_per_s": len(wanted) / (window_end - window_start),
        "delivery_p50_s": pct(delays, 0.50), "delivery_p99_s": pct(delays, 0.99), "delivery_max_s": max(delays),
        "sync_apply_p50_s": pct(applied, 0.50), "sync_apply_p99_s": pct(applied, 0.99),
        "repeats": len([a for a in _arrivals(stack) if a["seq"] in wanted]) - len(wanted),
    }
    assert len(delays) == len(wanted) == len(applied)


def test_deliveries_per_second_of_a_backlog(stack: Stack) -> None:
    from tests.notify.support import wait_for

    admin = httpx.Client(base_url=stack.upstream, timeout=120)
    before = len(_arrivals(stack))
    admin.post("/admin/events/random", json={"count": BACKLOG}).raise_for_status()
    target = admin.get("/admin/state").json()["seq"]
    # the notifier is stopped: the changes wait in the stream; it fans them out and delivers them
    started = time.perf_counter()
    stack.spawn("notify", "notify")
    wait_for(lambda: len(_arrivals(stack)) - before >= BACKLOG, 300, "the backlog delivered", interval=0.2)
    elapsed = time.perf_counter() - started
    import psutil

    cpu = psutil.Process(stack.children["notify"].pid).cpu_times()
    admin.close()
    RESULTS["backlog"] = {"messages": BACKLOG, "seconds": elapsed, "deliveries_per_s": BACKLOG / elapsed,
                          "up_to_seq": target,
                          "notifier_cpu_ms_per_message": round((cpu.user + cpu.system) / BACKLOG * 1000, 3)}
    stack.stop("notify")
    assert {a["seq"] for a in _arrivals(stack)} >= set(range(target - BACKLOG + 1, target + 1))

    # the anchor: the same number of POSTs over the same client, no outbox, no Redis
    body = json.dumps({"type": "permit.changed", "timestamp": "2026-11-27T10:31:02.113Z",
                       "data": {"pn": "WP1100002020000001", "seq": 1, "permit": {"pn": "WP1100002020000001"}}}).encode()

    async def bare() -> float:
        deliverer = Deliverer(AddressPolicy(), connect_timeout_s=5, read_timeout_s=15)
        slots = asyncio.Semaphore(16)

        async def one() -> None:
            async with slots:
                await deliverer.send(stack.receiver, {"webhook-id": "msg_bench", "webhook-timestamp": "0",
                                                      "webhook-signature": "v1,AAAA"}, body)

        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(BACKLOG)))
        elapsed = time.perf_counter() - t
        await deliverer.aclose()
        return elapsed

    anchor = asyncio.run(bare())
    RESULTS["bare_posts"] = {"messages": BACKLOG, "seconds": anchor, "posts_per_s": BACKLOG / anchor}


def test_write_results() -> None:
    one, two = RESULTS["delay_1_notifier"], RESULTS["delay_2_notifiers"]
    backlog, bare = RESULTS["backlog"], RESULTS["bare_posts"]
    targets = [
        {"name": "delivery delay p99 at 1,000 changes/s, seconds, 1 notifier", "value": one["delivery_p99_s"],
         "target": "< 2.0", "met": one["delivery_p99_s"] < 2.0},
        {"name": "delivery delay p99 at 1,000 changes/s, seconds, 2 notifiers", "value": two["delivery_p99_s"],
         "target": "< 2.0", "met": two["delivery_p99_s"] < 2.0},
        {"name": "delivery delay p99 / the sync job's own change latency p99, 2 notifiers",
         "value": two["delivery_p99_s"] / two["sync_apply_p99_s"], "target": "(for the record)", "met": True},
        {"name": "backlog deliveries/s / bare POSTs/s over the same client",
         "value": backlog["deliveries_per_s"] / bare["posts_per_s"], "target": "(for the record)", "met": True},
    ]
    document = {
        "about": {
            "command": "python3 -m pytest benchmarks/test_bench_notify.py -p no:cacheprovider -s",
            "python": platform.python_version(), "machine": platform.machine(), "cores": os.cpu_count(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average_at_end": os.getloadavg(),
            "note": "other sessions share this machine: compare runs by their load averages",
            "method": __doc__.split("Method", 1)[1].strip() if __doc__ else "",
        },
        "targets": targets,
        "figures": RESULTS,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({"targets": targets, "figures": RESULTS}, indent=2))
    assert all(isinstance(t["value"], float) for t in targets)
