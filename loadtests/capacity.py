"""Size the nodes for a national peak from what a load test measured each request to cost.

    python -m loadtests run ... --holders 1000000 --peak-factor 10     # sizes as part of the run
    python3 loadtests/capacity.py --report DIR/report.json [--holders 2000000 ...] [--json]

The run measures, at each scenario's knee (the highest step rate that still met the
SLO), the CPU time the API's worker processes spent per request, how busy each
worker was there, Redis's CPU time and commands per request. From those:

- **API workers** = peak requests/s x API CPU-seconds per request / the share of a
  core a worker may spend on requests: ``--api-utilisation`` (or less where the knee
  came at a lower load: the SLO broke first, queueing rather than CPU was the limit)
  less what a worker spends idle; never fewer than ``--min-api-workers`` (two hosts of
  two, so that one host and one worker can fail). Costs per request are what a
  request adds: the run measures the service idle first and subtracts that.
- **Redis primaries** = (Redis's idle CPU + peak x Redis CPU-seconds per request) /
  ``--redis-utilisation`` (Redis runs commands on one core), at least 1. The permit index is one hash slot
  (``{pv}``, one primary, see ``verifier/index/__init__.py``): past one primary's core
  the index's own reads do not spread, and the sizing says so.
- **Redis replicas** = primaries x ``--replicas-per-primary`` (availability; the API
  reads from primaries). The node memory the index needs: holders x
  ``--index-bytes-per-permit`` x 2 (a full resync holds two generations).

The peak comes from the assumptions, each a flag, all printed with the result:
scans/s = holders x scans per holder per day / 86,400 x peak factor (the busiest
second against the day's average second); the e-card platform's calls have their own
peak factor (a push notice makes many holders open the app at once); partners'
bulk look-ups run in a nightly window. The stress case is a flat rate
(``--stress-scans-per-s``, 50,000 by default) at its own SLO (``--stress-slo-p99-ms``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Assumptions:
    holders: int = 1_000_000
    scans_per_holder_per_day: float = 0.2
    peak_factor: float = 10.0
    holder_calls_per_holder_per_day: float = 1.0
    ecard_peak_factor: float = 30.0
    partner_checks_per_holder_per_day: float = 1.0
    partner_window_hours: float = 2.0
    slo_p99_ms: float = 250.0
    api_utilisation: float = 0.6
    redis_utilisation: float = 0.5
    min_api_workers: int = 4
    replicas_per_primary: int = 1
    index_bytes_per_permit: float = 351.0
    redis_node_memory_gb: float = 16.0
    stress_scans_per_s: float = 50_000.0
    stress_slo_p99_ms: float = 50.0


WHY: dict[str, str] = {
    "holders": "foreigners holding a work permit in China: of the order of one million",
    "scans_per_holder_per_day": "border crossings, service-hall visits, social insurance checks: a few a month "
                                "each, spread over every day (0.2 = one every five days)",
    "peak_factor": "the busiest second against the day's average second: opening hours, the morning peak at "
                   "the border, bursts (the day_mix profile's own peak hour is about 2.2x its average hour)",
    "holder_calls_per_holder_per_day": "the e-card app's permit page opened (sign-in, own permit, who verified "
                                       "me): each a request",
    "ecard_peak_factor": "the e-card's own peaks: a push notice or a deadline makes many holders open the app "
                         "within minutes",
    "partner_checks_per_holder_per_day": "employers' platforms re-check each employee daily, 1,000 ids a request",
    "partner_window_hours": "the nightly window in which partners run their bulk checks",
    "slo_p99_ms": "the latency a scan must get at the 99th percentile (the knee is the highest rate that "
                  "keeps it, with errors under 0.1 %)",
    "api_utilisation": "the share of a core an API worker may run at at peak (room for bursts, GC, a failed "
                       "host's load); lowered to the knee's own where the SLO broke at less",
    "redis_utilisation": "the share of its one core a Redis primary may run at at peak",
    "min_api_workers": "two hosts of two workers: one host and one worker can fail",
    "replicas_per_primary": "a replica per primary for failover",
    "index_bytes_per_permit": "Redis used_memory per permit with its ssn and card look-ups "
                              "(benchmarks/test_bench_index.py: 351 MB per million)",
    "redis_node_memory_gb": "memory of a Redis node; the index must fit twice in one (a resync's two generations)",
    "stress_scans_per_s": "the stress case: a flat rate of scans to size for",
    "stress_slo_p99_ms": "the stress case's SLO",
}

REQUESTS_PER_BULK_LOOKUP = 1000


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sizing assumptions (all printed with the result)")
    for f in fields(Assumptions):
        default = getattr(Assumptions(), f.name)
        group.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default,
                           help=f"{WHY[f.name]} (default {default:g})")


def from_args(args: argparse.Namespace) -> Assumptions:
    return Assumptions(**{f.name: getattr(args, f.name) for f in fields(Assumptions)})


def national_peak(a: Assumptions) -> dict[str, float]:
    """Requests/s at the national peak, by kind of traffic."""
    return {
        "scans_per_s": a.holders * a.scans_per_holder_per_day / 86_400 * a.peak_factor,
        "holder_calls_per_s": a.holders * a.holder_calls_per_holder_per_day / 86_400 * a.ecard_peak_factor,
        "partner_lookups_per_s": a.holders * a.partner_checks_per_holder_per_day / REQUESTS_PER_BULK_LOOKUP
        / (a.partner_window_hours * 3600),
    }


def peak_rps(scenario: str, a: Assumptions, requests_per_arrival: float) -> float:
    """The national peak in the scenario's own requests: as if all of it were of that kind."""
    peak = national_peak(a)
    if scenario == "partner_bulk":
        return peak["partner_lookups_per_s"]
    if scenario == "holder":
        return peak["holder_calls_per_s"]
    if scenario == "day_mix":  # everything at once: the scans, the holders' calls and the partners' look-ups
        return peak["scans_per_s"] * requests_per_arrival + peak["holder_calls_per_s"] + peak["partner_lookups_per_s"]
    return peak["scans_per_s"] * requests_per_arrival


@dataclass(frozen=True)
class Measured:
    """What one step (the knee) measured, per request, above what the service spends idle."""

    rps: float
    api_cpu_s_per_request: float
    """API workers' CPU time per request beyond their idle use (the run's idle while before the steps)."""
    api_workers: int
    api_worker_utilisation: float
    """Mean share of a core each API worker ran at in that step, idle use included."""
    redis_cpu_s_per_request: float | None
    redis_ops_per_request: float | None
    knee_reached: bool
    """True when a higher step broke the SLO (the knee is a limit); False when every step met it."""
    api_worker_idle_cores: float = 0.0
    """What each API worker spends with no load (freshness poll, audit flush, metrics): a fixed cost per worker."""
    redis_idle_cores: float = 0.0


def size(peak: float, m: Measured, a: Assumptions) -> dict[str, Any]:
    notes: list[str] = []
    utilisation = a.api_utilisation
    if m.knee_reached and 0 < m.api_worker_utilisation < utilisation:
        utilisation = m.api_worker_utilisation
        notes.append(f"the SLO broke above {m.api_worker_utilisation:.0%} of a core per API worker: sized at that")
    usable = utilisation - m.api_worker_idle_cores
    if usable < 0.05:
        usable = 0.05
        notes.append("API workers spend most of their CPU idle: sized at 5 % of a core each for requests")
    api_cores = peak * m.api_cpu_s_per_request
    api_workers = max(a.min_api_workers, math.ceil(api_cores / usable))
    per_worker_at_knee = m.rps / m.api_workers if m.api_workers else 0.0
    by_knee = max(a.min_api_workers, math.ceil(peak / per_worker_at_knee)) if per_worker_at_knee > 0 else None
    if m.redis_cpu_s_per_request is None:
        redis_cores = None
        primaries = 1
        notes.append("Redis was not measured (no INFO): one primary assumed")
    else:
        redis_cores = m.redis_idle_cores + peak * m.redis_cpu_s_per_request
        primaries = max(1, math.ceil(redis_cores / a.redis_utilisation))
        if primaries > 1:
            notes.append(f"{primaries} primaries by CPU, but the permit index is one hash slot on one primary: "
                         "its reads do not spread (partition the index or read from replicas)")
    index_gb = a.holders * a.index_bytes_per_permit * 2 / 1e9
    if index_gb > a.redis_node_memory_gb:
        notes.append(f"the index needs {index_gb:.1f} GB on one node (two generations), more than "
                     f"--redis-node-memory-gb {a.redis_node_memory_gb:g}")
    return {
        "peak_rps": round(peak, 2),
        "api_workers": api_workers,
        "redis_primaries": primaries,
        "redis_replicas": primaries * a.replicas_per_primary,
        "api_cores_at_peak": round(api_cores, 4),
        "api_utilisation_used": round(utilisation, 3),
        "api_workers_at_assumed_utilisation": max(a.min_api_workers, math.ceil(
            api_cores / max(0.05, a.api_utilisation - m.api_worker_idle_cores))),
        "api_workers_by_knee_rate": by_knee,
        "redis_cores_at_peak": None if redis_cores is None else round(redis_cores, 4),
        "redis_ops_per_s_at_peak": None if m.redis_ops_per_request is None else round(peak * m.redis_ops_per_request),
        "index_memory_gb": round(index_gb, 2),
        "measured": asdict(m),
        "assumptions": asdict(a),
        "notes": notes,
    }


def describe(sizing: dict[str, Any]) -> str:
    measured = sizing["measured"]
    redis = ("" if sizing["redis_cores_at_peak"] is None
             else f", {sizing['redis_cores_at_peak']:.3f} Redis cores")
    return (f"peak {sizing['peak_rps']:,.1f} req/s at {measured['api_cpu_s_per_request'] * 1e3:.3f} ms API CPU "
            f"per request: {sizing['api_cores_at_peak']:.3f} API cores{redis} -> {sizing['api_workers']} API workers, "
            f"{sizing['redis_primaries']} Redis primaries, {sizing['redis_replicas']} replicas")


def print_assumptions(a: Assumptions, out: Any = None) -> None:
    out = out or sys.stdout
    peak = national_peak(a)
    out.write("assumptions (each a flag of the same name):\n")
    for name, value in asdict(a).items():
        out.write(f"  --{name.replace('_', '-'):<36} {value:>12,g}   {WHY[name]}\n")
    out.write(f"national peak: {peak['scans_per_s']:,.1f} scans/s, {peak['holder_calls_per_s']:,.1f} holder calls/s, "
              f"{peak['partner_lookups_per_s']:,.2f} bulk look-ups/s\n")


def resize(report: dict[str, Any], a: Assumptions) -> dict[str, Any]:
    """Every scenario's sizing again, from the costs the report measured, under other assumptions."""
    out: dict[str, Any] = {}
    for name, scen in report["scenarios"].items():
        sizing = scen.get("sizing")
        if not sizing:
            continue
        m = Measured(**sizing["measured"])
        out[name] = size(peak_rps(name, a, scen.get("requests_per_arrival", 1.0)), m, a)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, required=True, help="a run's report.json")
    parser.add_argument("--json", action="store_true")
    add_flags(parser)
    args = parser.parse_args(argv)
    a = from_args(args)
    sized = resize(json.loads(args.report.read_text()), a)
    if args.json:
        print(json.dumps(sized, indent=2))
        return 0
    print_assumptions(a)
    for name, sizing in sized.items():
        print(f"{name}: {describe(sizing)}")
        for note in sizing["notes"]:
            print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
