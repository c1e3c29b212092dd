"""What every process and Redis did during a run: CPU and memory of each process, Redis's INFO.

A thread samples, every ``interval_s``:

- each process of the service the demo's info file names (``pids``): the API's
  supervisor and each of its worker processes (found anew each time, a worker that
  restarts is a new one), the sync job, the upstream simulator, Redis; and the load
  generator's master and workers; for each its CPU time (user + system, seconds
  since it started) and resident memory (RSS);
- Redis ``INFO``: ``total_commands_processed`` (ops/s between two samples),
  ``used_memory``, and its own CPU time (``used_cpu_user + used_cpu_sys``).

Samples are cumulative counters with wall-clock times, so that a step's figures
are the difference between the samples at its bounds (``between``).
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class Watched:
    role: str
    """``api worker``, ``api supervisor``, ``api helper``, ``sync``, ``upstream``, ``redis``, ``generator worker``, ``generator master``."""
    pid: int
    process: Any = None


@dataclass
class Monitor:
    processes: list[Watched]
    redis_url: str | None = None
    interval_s: float = 0.5
    api_pid: int | None = None
    """The API's supervisor: its children are the API worker processes."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _roles: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def for_demo(cls, info: dict[str, Any], generators: dict[str, int], interval_s: float = 0.5) -> "Monitor":
        pids = info.get("pids") or {}
        watched = [Watched(role, pid) for role, pid in pids.items() if role != "api"]
        watched += [Watched(role, pid) for role, pid in generators.items()]
        return cls(watched, info.get("redis"), interval_s, api_pid=pids.get("api"))

    # -- sampling -------------------------------------------------------------------

    def _processes(self) -> list[tuple[str, int, Any]]:
        found: list[tuple[str, int, Any]] = []
        if self.api_pid is not None:
            try:
                api = psutil.Process(self.api_pid)
                children = [(self._api_role(c), c.pid, c) for c in api.children(recursive=True)]
                # One worker: uvicorn serves in the supervisor itself.
                serving = any(role == "api worker" for role, _, _ in children)
                found.append(("api supervisor" if serving else "api worker", api.pid, api))
                found += children
            except psutil.Error:
                pass
        for w in self.processes:
            if w.process is None:
                try:
                    w.process = psutil.Process(w.pid)
                except psutil.Error:
                    continue
            found.append((w.role, w.pid, w.process))
        return found

    def _api_role(self, child: Any) -> str:
        """A child of the API's supervisor is a worker, or multiprocessing's resource tracker (not serving)."""
        role = self._roles.get(child.pid)
        if role is None:
            try:
                tracker = any("resource_tracker" in part for part in child.cmdline())
            except psutil.Error:
                tracker = False
            role = self._roles[child.pid] = "api helper" if tracker else "api worker"
        return role

    def sample(self, redis: Any = None) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time(), "processes": {}}
        for role, pid, process in self._processes():
            try:
                with process.oneshot():
                    cpu = process.cpu_times()
                    row["processes"][f"{role} {pid}"] = {
                        "role": role, "pid": pid, "cpu_s": cpu.user + cpu.system, "rss": process.memory_info().rss,
                    }
            except psutil.Error:
                continue
        if redis is not None:
            try:
                info = redis.info()
                row["redis"] = {
                    "commands": info["total_commands_processed"], "used_memory": info["used_memory"],
                    "cpu_s": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                    "ops_per_s_instant": info.get("instantaneous_ops_per_sec"),
                }
            except Exception as exc:  # noqa: BLE001 - a missed sample is noted, the run goes on
                self.errors.append(f"redis INFO: {type(exc).__name__}")
        return row

    def _loop(self) -> None:
        redis = None
        if self.redis_url:
            from verifier.lib.redis_client import sync_client

            try:
                redis = sync_client(self.redis_url)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"redis: {type(exc).__name__}")
        try:
            while True:
                self.samples.append(self.sample(redis))
                if self._stop.wait(self.interval_s):
                    self.samples.append(self.sample(redis))
                    return
        finally:
            if redis is not None:
                redis.close()

    def start(self) -> "Monitor":
        self._thread = threading.Thread(target=self._loop, name="loadtests-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.samples


# -- reading the samples -------------------------------------------------------------


def _at(samples: list[dict[str, Any]], t: float, value: Any) -> float | None:
    """A cumulative counter at time ``t``, interpolated between the two samples around it."""
    times = [s["t"] for s in samples]
    i = bisect.bisect_left(times, t)
    if i <= 0 or i >= len(samples):
        edge = samples[0] if i <= 0 else samples[-1]
        return value(edge)
    before, after = samples[i - 1], samples[i]
    a, b = value(before), value(after)
    if a is None or b is None:
        return a if b is None else b
    span = after["t"] - before["t"]
    return a + (b - a) * ((t - before["t"]) / span if span > 0 else 0.0)


def between(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Each process's CPU (cores) and largest RSS, and Redis's ops/s, memory and CPU, from ``start`` to ``end``."""
    out: dict[str, Any] = {"processes": {}, "redis": None}
    if len(samples) < 2 or end <= start:
        return out
    span = end - start
    names = {name for s in samples for name in s["processes"]}
    inside = [s for s in samples if start <= s["t"] <= end] or [min(samples, key=lambda s: abs(s["t"] - end))]
    for name in sorted(names):
        def cpu(s: dict[str, Any], name: str = name) -> float | None:
            p = s["processes"].get(name)
            return None if p is None else p["cpu_s"]

        first, last = _at(samples, start, cpu), _at(samples, end, cpu)
        rss = [s["processes"][name]["rss"] for s in inside if name in s["processes"]]
        if first is None or last is None or not rss:
            continue
        role = next(s["processes"][name]["role"] for s in samples if name in s["processes"])
        out["processes"][name] = {"role": role, "cpu_cores": max(0.0, (last - first) / span), "rss_bytes": max(rss)}
    with_redis = [s for s in samples if "redis" in s]
    if len(with_redis) >= 2:
        def commands(s: dict[str, Any]) -> float:
            return float(s["redis"]["commands"])

        def redis_cpu(s: dict[str, Any]) -> float:
            return float(s["redis"]["cpu_s"])

        c0, c1 = _at(with_redis, start, commands), _at(with_redis, end, commands)
        u0, u1 = _at(with_redis, start, redis_cpu), _at(with_redis, end, redis_cpu)
        memory = [s["redis"]["used_memory"] for s in with_redis if start <= s["t"] <= end] or \
            [with_redis[-1]["redis"]["used_memory"]]
        out["redis"] = {
            "ops_per_s": max(0.0, ((c1 or 0) - (c0 or 0)) / span),
            "cpu_cores": max(0.0, ((u1 or 0) - (u0 or 0)) / span),
            "used_memory_bytes": max(memory),
        }
    return out


def series(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-interval rates for the plots: each process's CPU (cores) and RSS, Redis ops/s and memory."""
    out: dict[str, Any] = {"t": [], "processes": {}, "redis_ops_per_s": [], "redis_memory": []}
    for before, after in zip(samples, samples[1:]):
        span = after["t"] - before["t"]
        if span <= 0:
            continue
        out["t"].append(after["t"])
        for name, p in after["processes"].items():
            previous = before["processes"].get(name)
            row = out["processes"].setdefault(name, {"role": p["role"], "t": [], "cpu": [], "rss": []})
            row["t"].append(after["t"])
            row["cpu"].append(max(0.0, (p["cpu_s"] - previous["cpu_s"]) / span) if previous else 0.0)
            row["rss"].append(p["rss"])
        if "redis" in after and "redis" in before:
            out["redis_ops_per_s"].append(max(0.0, (after["redis"]["commands"] - before["redis"]["commands"]) / span))
            out["redis_memory"].append(after["redis"]["used_memory"])
        else:
            out["redis_ops_per_s"].append(None)
            out["redis_memory"].append(None)
    return out
