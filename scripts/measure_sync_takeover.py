"""Measure how long the sync job's failover takes after a kill -9 (issue 11, defect 4).

    .venv/bin/python scripts/measure_sync_takeover.py [--trials 5] [--permits 5000] [--json out.json]

Starts a private Redis, the upstream simulator (in this process, 50 events/s) and
``verifier sync`` processes with the default settings (lock TTL 1 s, renewed every
0.33 s; a standby polls every 0.1 s), then, per trial:

- standby: two jobs (different ``--instance``); kill -9 the leader; time until the
  standby holds the lock, and until the index is confirmed again (its first heartbeat);
- restarted: one job; kill -9 it and start a new one at once (same host identity);
  time until the new process holds the lock (its Python start-up included), and until
  the index is confirmed again.

Times are wall-clock from the kill, read by polling Redis every 5 ms. Anchor, in the
same run: the wall-clock start-up of the ``verifier sync`` command line with the job's
modules imported, up to its ``--help`` (what a restarted job pays before it can ask for
the lock). The machine is a shared
2-core one: figures vary with its load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from verifier.index.writer import IndexWriter  # noqa: E402
from verifier.lib.redis_client import sync_client  # noqa: E402
from verifier.lib.redis_server import EmbeddedRedis  # noqa: E402
from verifier.upstream.server import UpstreamServer  # noqa: E402
from verifier.upstream.simulator import Upstream  # noqa: E402


LOGS: dict[int, Path] = {}
INSTANCES: dict[int, str | None] = {}


def start_job(redis_url: str, upstream_url: str, instance: str | None, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": redis_url, "UPSTREAM_URL": upstream_url}
    env.pop("VERIFIER_SYNC_LOCK_TTL_S", None)
    if instance:
        env["VERIFIER_SYNC_INSTANCE"] = instance
    log = log.with_name(f"{log.stem}-{time.monotonic_ns()}.log")
    process = subprocess.Popen([sys.executable, "-m", "verifier", "sync"], cwd=REPO, env=env,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    LOGS[process.pid] = log
    INSTANCES[process.pid] = instance
    return process


def standing_by(pid: int) -> bool:
    return "standby (another sync job leads)" in LOGS[pid].read_text(errors="replace")


def leader_pid(writer: IndexWriter) -> int | None:
    parts = (writer.leader() or "").split(":")
    return int(parts[2]) if len(parts) == 4 else None


def wait(predicate, timeout: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.005)
    raise TimeoutError("the condition did not come true")


def as_of(writer: IndexWriter) -> float | None:
    return writer.state().as_of


def trial(writer: IndexWriter, victim: subprocess.Popen[bytes], successor_pid, start_successor=None):  # type: ignore[no-untyped-def]
    wait(lambda: leader_pid(writer) == victim.pid and as_of(writer) is not None)
    if successor_pid is not None:  # the standby must be up and waiting, not still starting
        wait(lambda: standing_by(successor_pid))
    time.sleep(0.7)  # a random-ish moment of its work
    before = as_of(writer)
    killed = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    successor = start_successor() if start_successor else None
    pid = successor.pid if successor else successor_pid
    locked = wait(lambda: leader_pid(writer) == pid)
    confirmed = wait(lambda: (a := as_of(writer)) is not None and before is not None and a > before + 0.001
                     and leader_pid(writer) == pid)
    return locked - killed, confirmed - killed, successor


def summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--permits", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"sync-takeover-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    redis = EmbeddedRedis(persist=False).start()
    upstream = Upstream.create(permits=args.permits, seed=7, event_rate=50)
    results: dict[str, dict[str, list[float]]] = {"standby": {"lock": [], "confirmed": []},
                                                  "restarted": {"lock": [], "confirmed": []}}
    try:
        with UpstreamServer(upstream) as server:
            client = sync_client(redis.url)
            writer = IndexWriter(client)
            jobs = [start_job(redis.url, server.url, "node-a", logs / "a.log"),
                    start_job(redis.url, server.url, "node-b", logs / "b.log")]
            for _ in range(args.trials):
                wait(lambda: leader_pid(writer) in {j.pid for j in jobs})
                leader = next(j for j in jobs if j.pid == leader_pid(writer))
                standby = next(j for j in jobs if j is not leader)
                instance = INSTANCES[leader.pid]
                locked, confirmed, _ = trial(writer, leader, standby.pid)
                results["standby"]["lock"].append(locked)
                results["standby"]["confirmed"].append(confirmed)
                jobs = [standby, start_job(redis.url, server.url, instance, logs / f"{instance}.log")]
            for job in jobs:
                job.send_signal(signal.SIGTERM)
                job.wait(30)
            lone = start_job(redis.url, server.url, None, logs / "lone.log")
            for _ in range(args.trials):
                locked, confirmed, lone = trial(
                    writer, lone, None, lambda: start_job(redis.url, server.url, None, logs / "lone.log"))
                results["restarted"]["lock"].append(locked)
                results["restarted"]["confirmed"].append(confirmed)
            lone.send_signal(signal.SIGTERM)
            lone.wait(30)
            client.close()
    finally:
        redis.stop()
    startup = []
    for _ in range(args.trials):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['verifier', 'sync', '--help']; "
                        "import verifier.sync.job, verifier.cli as c; c.main()"], cwd=REPO,
                       stdout=subprocess.DEVNULL, check=False)
        startup.append(time.monotonic() - started)
    results["anchor"] = {"cli_startup": startup}
    report = {kind: {what: summary(values) | {"trials": values} for what, values in parts.items()}
              for kind, parts in results.items()}
    for kind, parts in report.items():
        for what, figures in parts.items():
            print(f"{kind:9s} {what:9s} min {figures['min']:.3f} s  median {figures['median']:.3f} s  "
                  f"max {figures['max']:.3f} s  ({len(figures['trials'])} trials)")
    restarted = statistics.median(results["restarted"]["lock"])
    print(f"restarted lock median / CLI start-up median: {restarted / statistics.median(startup):.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
