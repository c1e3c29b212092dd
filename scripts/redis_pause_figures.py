"""Figures of a hung index Redis: SIGSTOP for 3 s under `verifier serve` (2 workers), 4 threads of
near-cached WP1 scans on kept-alive connections; prints one JSON line (the README's "When Redis fails").

    .venv/bin/python scripts/redis_pause_figures.py

Uses the API tests' helpers (a real Redis for the index and one for the store, real keys and codes).
"""
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.api.conftest import PERMITS, make_world
from tests.api.servers import Server
from verifier.issuing import IssuerKey
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis

tmp = Path(tempfile.mkdtemp())
index = EmbeddedRedis(tmp / "index", persist=True).start()
store = EmbeddedRedis(tmp / "store", persist=True).start()
rs = sync_client(index.url)
world = make_world(index.url, rs, IssuerKey.generate(["CN-110000"]), tmp / "state", store_url=store.url)
server = Server(world, 2, tmp / "serve.log"); server.wait_ready()
code = world.wp1(PERMITS["valid"])
answers = []; stop = threading.Event()
def worker():
    with httpx.Client(base_url=server.url, timeout=10) as http:
        while not stop.is_set():
            t = time.monotonic()
            r = http.post("/v1/verify/qr", json={"qr": code, "terminal": "M"}, headers=world.headers("exit_entry"))
            answers.append((t, time.monotonic() - t, r.json()["result"]))
threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads: t.start()
time.sleep(2)
os.kill(index.pid, signal.SIGSTOP); t0 = time.monotonic()
time.sleep(3)
os.kill(index.pid, signal.SIGCONT); t1 = time.monotonic()
time.sleep(2); stop.set()
for t in threads: t.join()
during = [a for a in answers if t0 <= a[0] < t1]
after = [a for a in answers if a[0] >= t1]
firstbad_after = min((a[0] for a in after if a[2] != "VALID"), default=None)
lastbad = max((a[0] for a in after if a[2] != "VALID"), default=t1)
print(json.dumps({
  "requests_during": len(during),
  "last_VALID_after_stop_s": round(max((a[0] - t0 for a in during if a[2] == "VALID"), default=0), 3),
  "first_UNAVAILABLE_after_stop_s": round(min((a[0] - t0 for a in during if a[2] == "STATUS_UNAVAILABLE"), default=-1), 3),
  "slowest_answer_during_s": round(max(a[1] for a in during), 3),
  "p50_answer_during_s": round(sorted(a[1] for a in during)[len(during)//2], 4),
  "answers_during": sorted(set(a[2] for a in during)),
  "serving_again_after_sigcont_s": round(lastbad - t1, 3),
  "requests_after": len(after), "slowest_answer_after_s": round(max(a[1] for a in after), 3),
}))
server.stop(); index.stop(); store.stop()
