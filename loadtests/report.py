"""From a run's raw results to what a planner reads: ``report.json``, ``report.html`` and PNG plots.

Inputs (all in the run's folder): ``plan.json`` (what was meant), ``generator-results.json``
(what each generator process measured, phase by phase), ``samples.json`` (CPU and
memory of every process, Redis INFO, over time). ``python -m loadtests report DIR``
rebuilds the report from them (other SLOs, other assumptions) without running again.

Per step: the requests meant for its steady part (after ``settle``), their p50, p95,
p99 and largest latency (open model: from the intended send time), the error rate
(wrong answers, HTTP errors, timeouts, dropped arrivals), throughput, each process's
CPU and largest RSS, Redis ops/s, CPU and memory, the generator's own CPU and its
scheduler's lag. A step *meets the SLO* when its p99 is at most ``--slo-p99-ms`` and
its error rate at most ``--max-error-rate`` (0.1 %). The **knee** of a scenario is its
highest step that meets it; ``knee_reached`` is True when the step above broke it, False
when the knee is the highest step (the knee is then at least that); a lower step that
broke the SLO is listed in ``broken_below_knee``.

A step in which any generator process ran above ``--generator-cpu-max`` of a core is
*generator-bound*: the generator, not the service, may have been the limit. A
scenario whose knee rests on such a step (any such step up to the one above the
knee, or anywhere when none above it failed) is refused (exit code 3) unless
``--allow-generator-bound``.

Exit code: 3 when refused; else 1 when a scenario has no knee (its lowest step
already broke the SLO) or a knee below ``--slo-min-rps``; else 0.
"""

from __future__ import annotations

import html
import json
import math
import platform
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests import capacity, monitor
from loadtests.histogram import Histogram
from loadtests.scenarios import SCENARIOS, day_peak_factor

EXIT_MET, EXIT_NOT_MET, EXIT_REFUSED = 0, 1, 3
SCAN_SCENARIOS = ("exit_entry", "service_hall", "manual", "day_mix")
"""Where the stress case (scans/s) is sized from, in order of preference."""


@dataclass(frozen=True)
class Judgement:
    slo_p99_ms: float = 250.0
    max_error_rate: float = 0.001
    slo_min_rps: float = 0.0
    generator_cpu_max: float = 0.8
    """Share of one core above which a generator process is the bottleneck."""
    allow_generator_bound: bool = False


# -- one step ------------------------------------------------------------------------------


def _ms(h: Histogram, q: float) -> float | None:
    value = h.percentile_ms(q)
    return None if value is None else round(value, 3)


def analyse_phase(phase: dict[str, Any], reports: list[dict[str, Any]], samples: list[dict[str, Any]],
                  t0: float, j: Judgement) -> dict[str, Any]:
    window = phase["end"] - phase["steady_from"]
    by_name: dict[str, dict[str, Any]] = {}
    lag = Histogram()
    arrivals = dropped = unfinished = 0
    generator_cpu: list[float] = []
    generator_cpu_s = 0.0
    for r in reports:
        arrivals += r["arrivals"]
        dropped += r["dropped"]
        unfinished += r["unfinished"]
        lag.merge(Histogram.from_json(r["lag"]))
        generator_cpu.append(r["cpu_s"] / r["wall_s"] if r["wall_s"] else 0.0)
        generator_cpu_s += r["cpu_s"]
        for name, s in r["requests"].items():
            row = by_name.setdefault(name, {"count": 0, "failures": 0, "hist": Histogram(), "errors": Counter()})
            row["count"] += s["count"]
            row["failures"] += s["failures"]
            row["hist"].merge(Histogram.from_json(s["hist"]))
            row["errors"].update(s["errors"])
    total = Histogram.merged(row["hist"] for row in by_name.values())
    count = sum(row["count"] for row in by_name.values()) + unfinished
    failures = sum(row["failures"] for row in by_name.values()) + unfinished
    errors: Counter[str] = Counter()
    for row in by_name.values():
        errors.update(row["errors"])
    if unfinished:
        errors["unanswered when the step's drain time ran out"] += unfinished
    answered = total.count
    throughput = answered / window if window > 0 else 0.0
    error_rate = failures / count if count else 0.0
    p99 = _ms(total, 0.99)

    used = monitor.between(samples, t0 + phase["steady_from"], t0 + phase["end"])
    processes = used["processes"]
    api = {n: p for n, p in processes.items() if p["role"] == "api worker"}
    api_cores = sum(p["cpu_cores"] for p in api.values())
    redis = used["redis"]
    step: dict[str, Any] = {
        "step": phase["step"], "mode": phase["mode"], "rate_rps": phase["rate"],
        "window_s": round(window, 3), "requests": count, "throughput_rps": round(throughput, 2),
        "ok_rps": round((count - failures) / window, 2) if window > 0 else 0.0,
        "p50_ms": _ms(total, 0.50), "p95_ms": _ms(total, 0.95), "p99_ms": p99,
        "max_ms": round(total.max_s * 1000, 3) if total.count else None,
        "failures": failures, "error_rate": round(error_rate, 6), "dropped": dropped, "unfinished": unfinished,
        "errors": dict(errors.most_common(10)),
        "by_request": {
            name: {"requests": row["count"], "failures": row["failures"], "p50_ms": _ms(row["hist"], 0.5),
                   "p99_ms": _ms(row["hist"], 0.99)}
            for name, row in sorted(by_name.items())
        },
        "cpu_cores": {n: round(p["cpu_cores"], 4) for n, p in processes.items()},
        "rss_mb": {n: round(p["rss_bytes"] / 2**20, 1) for n, p in processes.items()},
        "api": {
            "workers": len(api),
            "cores": round(api_cores, 4),
            "cpu_ms_per_request": round(api_cores / throughput * 1000, 4) if throughput > 0 else None,
            "worker_utilisation": round(api_cores / len(api), 4) if api else None,
            "worker_rss_mb_max": round(max(p["rss_bytes"] for p in api.values()) / 2**20, 1) if api else None,
        },
        "redis": None if redis is None else {
            "ops_per_s": round(redis["ops_per_s"], 1),
            "ops_per_request": round(redis["ops_per_s"] / throughput, 3) if throughput > 0 else None,
            "cpu_cores": round(redis["cpu_cores"], 4),
            "cpu_ms_per_request": round(redis["cpu_cores"] / throughput * 1000, 4) if throughput > 0 else None,
            "used_memory_mb": round(redis["used_memory_bytes"] / 2**20, 2),
        },
        "generator": {
            "processes": len(reports),
            "cpu_max": round(max(generator_cpu), 3) if generator_cpu else None,
            "cpu_ms_per_request": round(generator_cpu_s / answered * 1000, 4) if answered else None,
            "lag_p99_ms": _ms(lag, 0.99),
            "arrivals": arrivals,
            "users": sum(r.get("users", 0) for r in reports) or None,
        },
    }
    step["generator"]["bound"] = bool(generator_cpu) and max(generator_cpu) > j.generator_cpu_max
    step["slo_met"] = count > 0 and p99 is not None and p99 <= j.slo_p99_ms and error_rate <= j.max_error_rate
    return step


def meets(step: dict[str, Any], slo_p99_ms: float, max_error_rate: float) -> bool:
    return step["requests"] > 0 and step["p99_ms"] is not None and step["p99_ms"] <= slo_p99_ms \
        and step["error_rate"] <= max_error_rate


def find_knee(steps: list[dict[str, Any]], slo_p99_ms: float, max_error_rate: float) -> tuple[int | None, int | None]:
    """(index of the knee step, index of the step above it, which broke the SLO; None when none did).

    The knee is the highest step that met the SLO: a lower step that broke it (a
    hiccup of a shared machine) does not hide a higher one that held, but is listed
    (``broken_below_knee``) so that the reader sees it.
    """
    passed = [i for i, s in enumerate(steps) if meets(s, slo_p99_ms, max_error_rate)]
    if not passed:
        return None, (0 if steps else None)
    knee = passed[-1]
    return knee, (knee + 1 if knee + 1 < len(steps) else None)


def baseline(samples: list[dict[str, Any]], t0: float, idle: list[float]) -> dict[str, Any]:
    """What the service spent with no load, in the plan's idle while before the first step."""
    used = monitor.between(samples, t0 + idle[0] + 0.1, t0 + idle[1])
    api = [p["cpu_cores"] for p in used["processes"].values() if p["role"] == "api worker"]
    redis = used["redis"]
    return {"window_s": round(idle[1] - idle[0] - 0.1, 3),
            "api_worker_cores": round(sum(api) / len(api), 4) if api else 0.0,
            "redis_cores": round(redis["cpu_cores"], 4) if redis else 0.0,
            "redis_ops_per_s": round(redis["ops_per_s"], 1) if redis else None,
            "cpu_cores": {n: round(p["cpu_cores"], 4) for n, p in used["processes"].items()}}


def _measured(step: dict[str, Any], knee_reached: bool, idle: dict[str, Any]) -> capacity.Measured | None:
    """The knee step's cost per request above the idle service's."""
    api, redis = step["api"], step["redis"]
    rps = step["throughput_rps"]
    if not api["workers"] or rps <= 0:
        return None
    api_busy = max(0.0, api["cores"] - idle["api_worker_cores"] * api["workers"])
    redis_busy = None if redis is None else max(0.0, redis["cpu_cores"] - idle["redis_cores"])
    return capacity.Measured(
        rps=rps, api_cpu_s_per_request=round(api_busy / rps, 9),
        api_workers=api["workers"], api_worker_utilisation=api["worker_utilisation"] or 0.0,
        redis_cpu_s_per_request=None if redis_busy is None else round(redis_busy / rps, 9),
        redis_ops_per_request=None if redis is None else redis["ops_per_request"],
        knee_reached=knee_reached, api_worker_idle_cores=idle["api_worker_cores"],
        redis_idle_cores=idle["redis_cores"],
    )


# -- a scenario ------------------------------------------------------------------------------


def analyse_scenario(name: str, steps: list[dict[str, Any]], closed: list[dict[str, Any]], j: Judgement,
                     a: capacity.Assumptions, requests_per_arrival: float, idle: dict[str, Any]) -> dict[str, Any]:
    knee, broke = find_knee(steps, j.slo_p99_ms, j.max_error_rate)
    considered = steps if broke is None else steps[: broke + 1]
    bound = [s["step"] for s in considered if s["generator"]["bound"]]
    knee_step = steps[knee] if knee is not None else None
    top = steps[-1] if steps else None
    gen_cost = top["generator"]["cpu_ms_per_request"] if top else None
    processes = top["generator"]["processes"] if top else 0
    out: dict[str, Any] = {
        "description": SCENARIOS[name].summary,
        "requests_per_arrival": round(requests_per_arrival, 3),
        "knee_rps": knee_step["throughput_rps"] if knee_step else None,
        "knee_offered_rps": knee_step["rate_rps"] if knee_step else None,
        "p99_ms_at_knee": knee_step["p99_ms"] if knee_step else None,
        "knee_step": knee,
        "knee_reached": broke is not None and knee is not None,
        "limited_by": ("no step met the SLO" if knee is None else
                       "the SLO (the next step broke it)" if broke is not None else
                       "not reached: every step met the SLO, the knee is higher"),
        "broken_below_knee": [s["step"] for s in steps[: knee or 0] if not meets(s, j.slo_p99_ms, j.max_error_rate)],
        "generator_bound_steps": bound,
        "trusted": not bound,
        "generator": {
            "processes": processes,
            "cpu_ms_per_request": gen_cost,
            # What the generator could send at --generator-cpu-max of each process, from its measured cost.
            "ceiling_rps": round(processes * j.generator_cpu_max / (gen_cost / 1000)) if gen_cost else None,
        },
        "steps": steps,
    }
    if closed:
        out["closed_loop_steps"] = closed
    out["slo_met"] = knee is not None and out["knee_rps"] >= j.slo_min_rps
    if knee_step is not None:
        measured = _measured(knee_step, out["knee_reached"], idle)
        out["sizing"] = None if measured is None else capacity.size(
            capacity.peak_rps(name, a, requests_per_arrival), measured, a)
    else:
        out["sizing"] = None
    return out


def stress_case(scenarios: dict[str, Any], a: capacity.Assumptions, j: Judgement,
                idle: dict[str, Any]) -> dict[str, Any] | None:
    """The flat stress rate at its own SLO, sized from the first scan scenario that has a step meeting it."""
    for name in SCAN_SCENARIOS:
        scen = scenarios.get(name)
        if scen is None:
            continue
        knee, broke = find_knee(scen["steps"], a.stress_slo_p99_ms, j.max_error_rate)
        base = {"scenario": name, "scans_per_s": a.stress_scans_per_s, "slo_p99_ms": a.stress_slo_p99_ms}
        if knee is None:
            return {**base, "sizing": None,
                    "why": f"no step of {name} met p99 <= {a.stress_slo_p99_ms:g} ms: nothing to size from"}
        step = scen["steps"][knee]
        measured = _measured(step, broke is not None, idle)
        peak = a.stress_scans_per_s * scen["requests_per_arrival"]
        return {**base, "knee_rps": step["throughput_rps"], "p99_ms_at_knee": step["p99_ms"],
                "sizing": None if measured is None else capacity.size(peak, measured, a)}
    return None


def build(plan: dict[str, Any], results: dict[str, Any], samples: list[dict[str, Any]], j: Judgement,
          a: capacity.Assumptions, context: dict[str, Any]) -> dict[str, Any]:
    by_phase: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in results["phases"]:
        by_phase[r["phase"]].append(r)
    t0 = results["t0"]
    open_steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    closed_steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for phase in plan["phases"]:
        step = analyse_phase(phase, by_phase.get(phase["id"], []), samples, t0, j)
        step["start"], step["end"] = round(t0 + phase["start"], 3), round(t0 + phase["end"], 3)
        (open_steps if phase["mode"] == "open" else closed_steps)[phase["scenario"]].append(step)
    rpa = plan.get("requests_per_arrival", {})
    idle = baseline(samples, t0, plan.get("idle") or [0.0, 0.0])
    scenarios = {name: analyse_scenario(name, steps, closed_steps.get(name, []), j, a, rpa.get(name, 1.0), idle)
                 for name, steps in open_steps.items()}
    missing = [p for p in ("exit_entry", "service_hall", "manual", "partner_bulk", "holder")
               if p not in plan.get("day_mix_parts", [p])]
    if scenarios.get("day_mix", {}).get("sizing") and missing:
        scenarios["day_mix"]["sizing"]["notes"].append(
            f"the day mix ran without {', '.join(missing)} (no key of its role): their share of the peak "
            "is sized at the mix's cost per request")
    refused = [n for n, s in scenarios.items() if not s["trusted"]]
    failing = [n for n, s in scenarios.items() if not s["slo_met"]]
    if refused and not j.allow_generator_bound:
        exit_code, verdict = EXIT_REFUSED, (f"REFUSED: the generator ran above {j.generator_cpu_max:.0%} of a core "
                                            f"at or below the knee of {', '.join(refused)}: it, not the service, "
                                            "may be the limit (more --generators, or another machine)")
    elif failing or not results.get("complete", True):
        exit_code = EXIT_NOT_MET
        why = [f"{n}: {scenarios[n]['limited_by'] if scenarios[n]['knee_rps'] is None else 'knee below --slo-min-rps'}"
               for n in failing]
        if not results.get("complete", True):
            why.append("not every generator process reported every step")
        verdict = "SLO NOT MET: " + "; ".join(why)
    else:
        exit_code, verdict = EXIT_MET, "SLO met: every scenario has a knee" + (
            f" at or above {j.slo_min_rps:g} req/s" if j.slo_min_rps else "")
    sized = {n: s["sizing"] for n, s in scenarios.items() if s.get("sizing")}
    basis = "day_mix" if "day_mix" in sized else max(sized, key=lambda n: sized[n]["api_workers"] or 0, default=None)
    return {
        **context,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_end": list(os.getloadavg())},
        "slo": {"p99_ms": j.slo_p99_ms, "max_error_rate": j.max_error_rate, "min_knee_rps": j.slo_min_rps},
        "generator": {"processes": plan["generators"], "cpu_max": j.generator_cpu_max,
                      "arrivals": plan.get("arrivals"), "connections": plan.get("connections")},
        "plan": {"step_s": plan["step_s"], "settle_s": plan["settle_s"], "bad_share": plan["bad_share"],
                 "closed_loop": plan.get("closed_loop"), "total_s": plan["total_s"]},
        "scenarios": scenarios,
        "national": {"peak": {k: round(v, 3) for k, v in capacity.national_peak(a).items()},
                     "day_profile_peak_factor": round(day_peak_factor(), 3),
                     "sizing_basis": basis, "sizing": sized.get(basis) if basis else None},
        "stress": stress_case(scenarios, a, j, idle),
        "idle": idle,
        "assumptions": {k: v for k, v in vars(a).items()},
        "verdict": verdict,
        "exit_code": exit_code,
        "monitor": {"samples": len(samples)},
    }


# -- plots -------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scenario(name: str, scen: dict[str, Any], slo: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    steps = scen["steps"]
    x = [s["throughput_rps"] for s in steps]
    for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        top.plot(x, [s[f"{q}_ms"] for s in steps], style, label=f"{q} (open model, from intended send)")
    closed = scen.get("closed_loop_steps", [])
    if closed:
        cx = [s["throughput_rps"] for s in closed]
        top.plot(cx, [s["p50_ms"] for s in closed], "o--", color="grey", label="p50 (closed loop, from actual send)")
        top.plot(cx, [s["p99_ms"] for s in closed], "^--", color="black", label="p99 (closed loop, from actual send)")
    top.axhline(slo["p99_ms"], color="red", linestyle=":", label=f"SLO p99 {slo['p99_ms']:g} ms")
    if scen["knee_step"] is not None:
        k = steps[scen["knee_step"]]
        top.axvline(k["throughput_rps"], color="green", linestyle="--")
        top.annotate(f"knee {k['throughput_rps']:,.0f} req/s\np99 {k['p99_ms']:.1f} ms"
                     + ("" if scen["knee_reached"] else "\n(not reached)"),
                     (k["throughput_rps"], k["p99_ms"]), textcoords="offset points", xytext=(8, 12), color="green")
    top.set_yscale("log")
    top.set_ylabel("latency (ms)")
    top.set_title(f"{name}: latency against throughput")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=7, loc="upper left")
    bottom.plot(x, [s["error_rate"] * 100 for s in steps], "o-", color="darkred", label="error rate (open)")
    if closed:
        bottom.plot([s["throughput_rps"] for s in closed], [s["error_rate"] * 100 for s in closed], "o--",
                    color="grey", label="error rate (closed)")
    bottom.axhline(slo["max_error_rate"] * 100, color="red", linestyle=":", label="0.1 %")
    bottom.set_ylabel("errors (%)")
    bottom.set_xlabel("throughput (requests/s answered)")
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_open_vs_closed(name: str, scen: dict[str, Any], slo: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for steps, label, style in ((scen["steps"], "open model", "o-"), (scen["closed_loop_steps"], "closed loop", "s--")):
        offered = [s["rate_rps"] for s in steps]
        left.plot(offered, [s["throughput_rps"] for s in steps], style, label=label)
        right.plot(offered, [s["p99_ms"] for s in steps], style, label=f"p99, {label}")
    top = max(s["rate_rps"] for s in scen["steps"])
    left.plot([0, top], [0, top], ":", color="grey", label="offered = answered")
    left.set_xlabel("offered rate (requests/s)")
    left.set_ylabel("answered (requests/s)")
    left.set_title(f"{name}: the closed loop offers less when the service slows")
    left.legend(fontsize=8)
    left.grid(True, alpha=0.3)
    right.axhline(slo["p99_ms"], color="red", linestyle=":", label=f"SLO {slo['p99_ms']:g} ms")
    right.set_yscale("log")
    right.set_xlabel("offered rate (requests/s)")
    right.set_ylabel("p99 latency (ms)")
    right.set_title("and its latency hides the queue (coordinated omission)")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _shade_phases(ax: Any, report: dict[str, Any], t0: float) -> None:
    colours = ["#e8f0fe", "#fef3e8", "#e8fef0", "#f6e8fe", "#fefbe8", "#e8fbfe", "#f0f0f0"]
    for i, (name, scen) in enumerate(report["scenarios"].items()):
        steps = scen["steps"] + scen.get("closed_loop_steps", [])
        for s in steps:
            ax.axvspan(s["start"] - t0, s["end"] - t0, color=colours[i % len(colours)], alpha=0.6, lw=0)
        if scen["steps"]:
            ax.text(scen["steps"][0]["start"] - t0, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=7,
                    va="bottom")


def plot_resources(report: dict[str, Any], samples: list[dict[str, Any]], cpu_path: Path, redis_path: Path) -> None:
    plt = _pyplot()
    s = monitor.series(samples)
    if not s["t"]:
        return
    t0 = samples[0]["t"]
    fig, (cpu, rss) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    _shade_phases(cpu, report, t0)
    for name, row in sorted(s["processes"].items()):
        t = [x - t0 for x in row["t"]]
        cpu.plot(t, row["cpu"], label=name, lw=1)
        rss.plot(t, [v / 2**20 for v in row["rss"]], label=name, lw=1)
    cpu.set_ylabel("CPU (cores)")
    cpu.set_title("CPU of each process (scenarios shaded)")
    cpu.legend(fontsize=6, ncol=3)
    cpu.grid(True, alpha=0.3)
    rss.set_ylabel("RSS (MB)")
    rss.set_xlabel("seconds")
    rss.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(cpu_path, dpi=100)
    plt.close(fig)

    fig, (ops, memory) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    t = [x - t0 for x in s["t"]]
    _shade_phases(ops, report, t0)
    ops.plot(t, s["redis_ops_per_s"], color="darkred")
    ops.set_ylabel("Redis ops/s")
    ops.set_title("Redis: commands per second and used memory")
    ops.grid(True, alpha=0.3)
    memory.plot(t, [None if v is None else v / 2**20 for v in s["redis_memory"]], color="navy")
    memory.set_ylabel("used_memory (MB)")
    memory.set_xlabel("seconds")
    memory.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(redis_path, dpi=100)
    plt.close(fig)


def plot_timeline(report: dict[str, Any], results: dict[str, Any], t_start: float, path: Path) -> None:
    """Requests per second and p99 per second of intended send time, all phases: the day mix's shape shows."""
    plt = _pyplot()
    seconds: dict[int, dict[str, Any]] = {}
    for r in results["phases"]:
        for k, v in r["seconds"].items():
            row = seconds.setdefault(int(k), {"n": 0, "failures": 0, "hist": Histogram()})
            row["n"] += v["n"]
            row["failures"] += v["failures"]
            row["hist"].merge(Histogram.from_json(v["hist"]))
    if not seconds:
        return
    offset = results["t0"] - t_start
    xs = sorted(seconds)
    fig, (rate, latency) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    _shade_phases(rate, report, t_start)
    rate.plot([x + offset for x in xs], [seconds[x]["n"] - seconds[x]["failures"] for x in xs], label="right answers")
    rate.plot([x + offset for x in xs], [seconds[x]["failures"] for x in xs], color="red", label="failures")
    rate.set_ylabel("requests/s")
    rate.set_title("every second of the run, by intended send time")
    rate.legend(fontsize=7)
    rate.grid(True, alpha=0.3)
    latency.plot([x + offset for x in xs], [seconds[x]["hist"].percentile_ms(0.99) for x in xs], color="purple")
    latency.axhline(report["slo"]["p99_ms"], color="red", linestyle=":")
    latency.set_yscale("log")
    latency.set_ylabel("p99 (ms)")
    latency.set_xlabel("seconds")
    latency.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plots(report: dict[str, Any], results: dict[str, Any], samples: list[dict[str, Any]], out: Path) -> list[str]:
    made = []
    for name, scen in report["scenarios"].items():
        plot_scenario(name, scen, report["slo"], out / f"latency-{name}.png")
        made.append(f"latency-{name}.png")
        if scen.get("closed_loop_steps"):
            plot_open_vs_closed(name, scen, report["slo"], out / "open-vs-closed.png")
            made.append("open-vs-closed.png")
    if samples:
        plot_resources(report, samples, out / "cpu.png", out / "redis.png")
        made += ["cpu.png", "redis.png"]
        plot_timeline(report, results, samples[0]["t"], out / "timeline.png")
        made.append("timeline.png")
    return [m for m in made if (out / m).exists()]


# -- HTML ------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _cell(value: Any) -> str:
    # Numbers right-aligned, words left.
    text = isinstance(value, str) and not value[:1].isdigit()
    return f"<td class='t'>{_fmt(value)}</td>" if text else f"<td>{_fmt(value)}</td>"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _steps_table(steps: list[dict[str, Any]]) -> str:
    rows = []
    for s in steps:
        api, redis, gen = s["api"], s["redis"] or {}, s["generator"]
        rows.append([s["step"], s["rate_rps"], s["throughput_rps"], s["p50_ms"], s["p95_ms"], s["p99_ms"],
                     s["max_ms"], f"{s['error_rate']:.3%}", s["slo_met"], api["cpu_ms_per_request"],
                     api["worker_utilisation"], api["worker_rss_mb_max"], redis.get("ops_per_s"),
                     redis.get("used_memory_mb"), gen["cpu_max"], gen["lag_p99_ms"],
                     "GENERATOR-BOUND" if gen["bound"] else "no"])
    return _table(["step", "offered req/s", "answered req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors",
                   "SLO met", "API CPU ms/req", "API worker cores", "API worker RSS MB", "Redis ops/s",
                   "Redis MB", "generator CPU", "sched. lag p99 ms", "generator-bound"], rows)


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:12.5px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child,td.t{text-align:left}img{max-width:100%;
border:1px solid #ddd;margin:.4em 0}.verdict{font-size:1.2em;padding:.5em;border-radius:4px}.met{background:#e3f7e3}
.not{background:#fde4e4}code{background:#f4f4f4;padding:0 3px}"""


def html_page(report: dict[str, Any], images: list[str]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Load test report</title>"
             f"<style>{CSS}</style></head><body><h1>Load test report</h1>"]
    cls = "met" if report["exit_code"] == 0 else "not"
    parts.append(f"<p class='verdict {cls}'>{e(report['verdict'])} (exit code {report['exit_code']})</p>")
    parts.append(f"<p>Target <code>{e(report.get('target', ''))}</code>, {e(report.get('when', ''))}; "
                 f"command <code>{e(report.get('command', ''))}</code>. Machine: {report['machine']['cpus']} CPUs, "
                 f"load average at the end {', '.join(f'{x:.2f}' for x in report['machine']['load_average_at_end'])}. "
                 f"SLO: p99 ≤ {report['slo']['p99_ms']:g} ms and errors ≤ {report['slo']['max_error_rate']:.1%}. "
                 f"Steps of {report['plan']['step_s']:g} s, the first {report['plan']['settle_s']:g} s of each not "
                 f"counted; {report['plan']['bad_share']:.0%} of arrivals are bad input with checked answers.</p>")
    parts.append("<h2>Knees and nodes</h2>")
    rows = []
    for name, s in report["scenarios"].items():
        z = s.get("sizing") or {}
        rows.append([name, s["knee_rps"], s["p99_ms_at_knee"], s["limited_by"], s["trusted"],
                     s["generator"]["ceiling_rps"], z.get("peak_rps"), z.get("api_workers"),
                     z.get("redis_primaries"), z.get("redis_replicas")])
    parts.append(_table(["scenario", "knee req/s", "p99 at knee ms", "limited by", "generator not the limit",
                         "generator ceiling req/s", "national peak req/s", "API workers", "Redis primaries",
                         "Redis replicas"], rows))
    national = report["national"]
    peak = national["peak"]
    parts.append(f"<p>National peak from the assumptions: {peak['scans_per_s']:,.1f} scans/s, "
                 f"{peak['holder_calls_per_s']:,.1f} holder calls/s, {peak['partner_lookups_per_s']:,.2f} bulk "
                 f"look-ups/s (the day_mix profile's own peak hour is {national['day_profile_peak_factor']:.2f}x "
                 f"its average hour). Sized on <b>{e(str(national['sizing_basis']))}</b>"
                 + (f": {e(capacity.describe(national['sizing']))}." if national["sizing"] else ".") + "</p>")
    stress = report.get("stress")
    if stress:
        if stress.get("sizing"):
            parts.append(f"<p>Stress case: {stress['scans_per_s']:,.0f} scans/s at p99 ≤ {stress['slo_p99_ms']:g} ms "
                         f"(from {e(stress['scenario'])}, knee {stress['knee_rps']:,.0f} req/s at that SLO): "
                         f"{e(capacity.describe(stress['sizing']))}.</p>")
        else:
            parts.append(f"<p>Stress case: {e(stress['why'])}.</p>")
    for name, s in report["scenarios"].items():
        for note in (s.get("sizing") or {}).get("notes", []):
            parts.append(f"<p>Note ({e(name)}): {e(note)}</p>")
    parts.append("<h2>Assumptions</h2><p>Each is a flag of <code>python -m loadtests run</code> and of "
                 "<code>loadtests/capacity.py</code>, which resizes from this report's measured costs.</p>")
    parts.append(_table(["flag", "value", "why"], [[f"--{k.replace('_', '-')}", v, capacity.WHY[k]]
                                                  for k, v in report["assumptions"].items()]))
    parts.append("<h2>Open model and closed loop</h2><p>In the open model arrivals come at the planned rate "
                 "whatever the service answers, and latency is counted from when a request was meant to be sent, "
                 "so a queue shows. A closed loop (each user waits for its answer before the next) sends less "
                 "when the service slows and times only the service, so it looks better than a border desk at "
                 "peak would feel (coordinated omission).</p>")
    if "open-vs-closed.png" in images:
        parts.append("<img src='open-vs-closed.png' alt='open model and closed loop'>")
    for name, s in report["scenarios"].items():
        below = (f" Steps below the knee that broke the SLO: {', '.join(map(str, s['broken_below_knee']))}."
                 if s["broken_below_knee"] else "")
        parts.append(f"<h2>{e(name)}</h2><p>{e(s['description'])}. Knee: {_fmt(s['knee_rps'])} req/s "
                     f"(p99 {_fmt(s['p99_ms_at_knee'])} ms), {e(s['limited_by'])}.{below}</p>")
        if f"latency-{name}.png" in images:
            parts.append(f"<img src='latency-{name}.png' alt='{e(name)} latency'>")
        parts.append(_steps_table(s["steps"]))
        if s.get("closed_loop_steps"):
            parts.append("<p>Closed loop, the same rates:</p>" + _steps_table(s["closed_loop_steps"]))
        errors: Counter[str] = Counter()
        for step in s["steps"]:
            errors.update(step["errors"])
        if errors:
            parts.append(_table(["error (all steps)", "count"], [[k, v] for k, v in errors.most_common(10)]))
        by_request: dict[str, list[Any]] = {}
        for step in s["steps"]:
            for req, row in step["by_request"].items():
                by_request.setdefault(req, []).append(f"{row['requests']:,} / p99 {_fmt(row['p99_ms'])}")
        parts.append(_table(["request", *[f"step {st['step']}" for st in s["steps"]]],
                            [[req, *cells] for req, cells in by_request.items()]))
    for image, title in (("timeline.png", "Over time"), ("cpu.png", "CPU and memory of each process"),
                         ("redis.png", "Redis")):
        if image in images:
            parts.append(f"<h2>{title}</h2><img src='{image}' alt='{title}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(out: Path, plan: dict[str, Any], results: dict[str, Any], samples: list[dict[str, Any]], j: Judgement,
          a: capacity.Assumptions, context: dict[str, Any]) -> dict[str, Any]:
    report = build(plan, results, samples, j, a, context)
    images = plots(report, results, samples, out)
    report["plots"] = images
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False, default=_json_default))
    (out / "report.html").write_text(html_page(report, images))
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


def rebuild(out: Path, j: Judgement, a: capacity.Assumptions) -> dict[str, Any]:
    """The report again from a run's raw files, under other SLOs or assumptions."""
    plan = json.loads((out / "plan.json").read_text())
    results = json.loads((out / "generator-results.json").read_text())
    samples = json.loads((out / "samples.json").read_text()) if (out / "samples.json").exists() else []
    context = json.loads((out / "context.json").read_text()) if (out / "context.json").exists() else {}
    context["rebuilt"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return write(out, plan, results, samples, j, a, context)
