"""``python -m loadtests run``: one whole run, from the demo's info file to the report.

1. the data: ``make_data.py`` mints codes, cards and keys for permits in the index
   (into ``DIR/data``; it holds API keys: keep ``DIR`` out of version control);
2. the plan (``plan.py``): the closed-loop comparison, then a step load per scenario;
3. the generator: a Locust master and ``--generators`` workers on 127.0.0.1
   (``generator.py``), while ``monitor.py`` samples every process and Redis;
4. the report (``report.py``), its verdict printed and returned as the exit code.

The closed-loop comparison runs first, then each scenario's open step load.

``python -m loadtests ceiling`` runs the same generator against ``sink.py`` (an
HTTP server that answers at once) to measure the generator's own ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtests import capacity, plan as plans, report
from loadtests.monitor import Monitor, Watched
from loadtests.scenarios import SCENARIOS, listed, scenario as scenario_named
from verifier.lib.progress import Bar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MASTER_GRACE_S = 60.0
"""How long past the plan's end the master may take (start-up, drain, reports) before it is stopped."""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The generator's locustfile imports this package: the repository root must be importable.
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def free_port() -> int:
    from verifier.lib.redis_server import free_port as free

    return free()


def run_generators(the_plan: dict[str, Any], out: Path, monitor: Monitor | None = None) -> dict[str, Any]:
    """Run a plan with a Locust master and workers on loopback; the workers' phase results."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    plan_file, results_file = out / "plan.json", out / "generator-results.json"
    plan_file.write_text(json.dumps(the_plan, indent=1))
    results_file.unlink(missing_ok=True)
    workers = int(the_plan["generators"])
    port = free_port()
    locustfile = str(HERE / "generator.py")
    run_time = int(the_plan["total_s"] + the_plan["drain_s"] + MASTER_GRACE_S)
    master_cmd = [
        sys.executable, "-m", "locust", "-f", locustfile, "--master", "--headless",
        "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", str(workers), "-u", str(workers), "-r", str(workers), "-t", f"{run_time}s",
        "--host", the_plan["target"], "--lt-plan", str(plan_file), "--lt-results", str(results_file),
        "--only-summary",
    ]
    worker_cmd = [sys.executable, "-m", "locust", "-f", locustfile, "--worker",
                  "--master-host", "127.0.0.1", "--master-port", str(port)]
    started: list[subprocess.Popen[bytes]] = []
    try:
        with open(logs / "generator-master.log", "wb") as log:
            master = subprocess.Popen(master_cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      cwd=REPO, env=child_env())
        started.append(master)
        for i in range(workers):
            with open(logs / f"generator-worker-{i}.log", "wb") as log:
                started.append(subprocess.Popen(worker_cmd, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=REPO, env=child_env()))
        if monitor is not None:
            monitor.processes.append(Watched("generator master", master.pid))
            monitor.processes += [Watched("generator worker", p.pid) for p in started[1:]]
        planned = round(float(the_plan["total_s"]) + float(the_plan["drain_s"]))
        deadline = time.monotonic() + run_time + MASTER_GRACE_S
        with Bar("load test", planned, unit="s") as bar:  # drawn only where a person watches
            began = time.monotonic()
            while master.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    master.wait(timeout=0.5)
                bar.update(min(planned, round(time.monotonic() - began)))
    finally:
        for process in reversed(started):  # only what this run started, by pid
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    if not results_file.exists():
        tail = (logs / "generator-master.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the generator's master wrote no results; its log ends:\n{tail}")
    return json.loads(results_file.read_text())  # type: ignore[no-any-return]


# -- the command line -------------------------------------------------------------------------------


def add_step_flags(parser: argparse.ArgumentParser, default_start: float) -> None:
    parser.add_argument("--duration", type=float, required=True,
                        help="seconds of each scenario's step load (all its steps together)")
    parser.add_argument("--steps", type=int, default=6, help="rates per scenario (default 6)")
    parser.add_argument("--start-rps", type=float, default=default_start,
                        help=f"the first step's requests/s, times the scenario's rate scale (default {default_start:g})")
    parser.add_argument("--step-factor", type=float, default=2.0, help="each step's rate over the last (default 2)")
    parser.add_argument("--rates", default="", help="comma-separated requests/s instead of --start-rps/--steps")
    parser.add_argument("--settle-s", type=float, default=None,
                        help="not counted at the start of each step (default a quarter of a step, at most 2 s)")
    parser.add_argument("--pause-s", type=float, default=3.0,
                        help="between scenarios, for the backlog of a step past the knee to drain (default 3)")
    parser.add_argument("--idle-s", type=float, default=2.0,
                        help="before the first step: the service's own use with no load, subtracted from costs")
    parser.add_argument("--generators", type=int, default=1,
                        help="Locust worker processes on 127.0.0.1, each sending its share (default 1)")
    parser.add_argument("--generator-cpu-max", type=float, default=80.0,
                        help="percent of one core above which a generator process is the bottleneck (default 80)")
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson",
                        help="arrival times: a Poisson process (independent callers) or evenly spaced (wrk2)")
    parser.add_argument("--connections", type=int, default=200, help="keep-alive connections per generator")
    parser.add_argument("--max-in-flight", type=int, default=2000,
                        help="outstanding arrivals per generator beyond which new ones count as dropped")
    parser.add_argument("--request-timeout-s", type=float, default=5.0,
                        help="an answer later than this is a failure (default 5)")
    parser.add_argument("--seed", type=int, default=1)


def _steps(args: argparse.Namespace) -> plans.Steps:
    rates = tuple(float(r) for r in args.rates.split(",") if r.strip()) if args.rates else ()
    return plans.Steps(duration_s=args.duration, steps=args.steps, start_rps=args.start_rps,
                       step_factor=args.step_factor, rates=rates, settle_s=args.settle_s, pause_s=args.pause_s,
                       idle_s=args.idle_s)


def _settings(args: argparse.Namespace, target: str) -> dict[str, Any]:
    return {"generators": args.generators, "target": target.rstrip("/"), "arrivals": args.arrivals,
            "connections": args.connections, "max_in_flight": args.max_in_flight,
            "request_timeout_s": args.request_timeout_s, "drain_s": args.request_timeout_s + 1.0,
            "seed": args.seed}


def run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="a whole run against a running service: data, step loads, report",
                       description="A whole run: the data, an open-model step load per scenario, the report.")
    p.add_argument("--target", required=True, help="the API's base URL (127.0.0.1 only on a shared machine)")
    p.add_argument("--info", type=Path, required=True, help="the demo's info file (verifier demo --info FILE)")
    p.add_argument("--out", type=Path, required=True, help="folder for report.json, report.html, plots, raw data")
    p.add_argument("--scenario", action="append", default=[],
                   help="a scenario to run (repeat, or comma-separated; default every one the keys allow): "
                   + ", ".join(n for n, s in SCENARIOS.items() if s.listed))
    p.add_argument("--closed-loop", default="exit_entry",
                   help="scenario run again closed-loop at the same rates, for comparison ('none': skip)")
    p.add_argument("--closed-pace", type=float, default=10.0, help="requests/s of one closed-loop user (default 10)")
    p.add_argument("--bad-share", type=float, default=0.05, help="share of arrivals that are bad input (default 0.05)")
    p.add_argument("--max-error-rate", type=float, default=0.001, help="errors allowed at the knee (default 0.001)")
    p.add_argument("--slo-min-rps", type=float, default=0.0,
                   help="a knee below this many requests/s fails the SLO (default 0: any knee)")
    p.add_argument("--allow-generator-bound", action="store_true",
                   help="report a knee even where the generator ran above --generator-cpu-max (flagged)")
    p.add_argument("--data-dir", type=Path, default=None, help="use data made before instead of DIR/data")
    p.add_argument("--monitor-interval-s", type=float, default=0.5)
    add_step_flags(p, default_start=50.0)
    capacity.add_flags(p)


def _scenarios(requested: list[str], keys: dict[str, Any]) -> list[str]:
    names = [n.strip() for item in requested for n in item.split(",") if n.strip()]
    if not names:
        return listed(keys)
    for name in names:
        if name not in SCENARIOS:
            raise SystemExit(f"loadtests: no scenario {name!r} (there are: {', '.join(SCENARIOS)})")
        if not SCENARIOS[name].available(keys):
            raise SystemExit(f"loadtests: scenario {name!r} needs a key of role(s) "
                             f"{', '.join(SCENARIOS[name].roles)}, which this service does not have")
    return names


def make_data(info_file: Path, folder: Path, cold: int) -> None:
    from loadtests import make_data as maker

    code = maker.main(["--info", str(info_file), "--out", str(folder), "--cold", str(cold),
                       "--keys-per-role", "4", "--partner-lookups", "10"])
    if code != 0:
        raise SystemExit(code)


def cmd_run(args: argparse.Namespace) -> int:
    started = time.time()
    info = json.loads(args.info.read_text())
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    steps = _steps(args)
    data_dir = args.data_dir or out / "data"
    # Keys decide which scenarios exist: the service's roles (make_data makes a key of each).
    roles_file = data_dir / "keys.json"
    if args.data_dir is None or not roles_file.exists():
        wanted = [n for item in args.scenario for n in item.split(",") if n.strip()] or list(SCENARIOS)
        budget = sum(steps.duration_s * max(steps.rates_of(n)) for n in wanted if n in SCENARIOS)
        make_data(args.info, data_dir, cold=int(min(200_000, max(500, budget * 0.35))))
    keys = json.loads(roles_file.read_text())
    scenarios = _scenarios(args.scenario, keys)
    closed = None if args.closed_loop in ("", "none") else args.closed_loop
    if closed is not None and closed not in scenarios:
        closed = None
    bad_share = args.bad_share
    the_plan = plans.build(
        scenarios, steps, closed, data_dir=str(data_dir.resolve()), bad_share=bad_share,
        closed_pace=args.closed_pace,
        requests_per_arrival={n: _requests_per_arrival(n, keys, bad_share) for n in scenarios},
        day_mix_parts=list(getattr(scenario_named("day_mix", keys), "present", ())),
        **_settings(args, args.target),
    )
    a = capacity.from_args(args)
    j = report.Judgement(slo_p99_ms=args.slo_p99_ms, max_error_rate=args.max_error_rate,
                         slo_min_rps=args.slo_min_rps, generator_cpu_max=args.generator_cpu_max / 100.0,
                         allow_generator_bound=args.allow_generator_bound)
    print(f"loadtests: {len(scenarios)} scenarios ({', '.join(scenarios)}), {len(the_plan['phases'])} steps of "
          f"{the_plan['step_s']:g} s, {args.generators} generator process(es); about {the_plan['total_s']:.0f} s",
          flush=True)
    watcher = Monitor.for_demo(info, {}, interval_s=args.monitor_interval_s).start()
    try:
        results = run_generators(the_plan, out, watcher)
    finally:
        samples = watcher.stop()
        (out / "samples.json").write_text(json.dumps(samples))
    context = {
        "command": "python -m loadtests " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)), "target": args.target,
        "monitor_errors": watcher.errors[:10],
    }
    (out / "context.json").write_text(json.dumps(context))
    result = report.write(out, the_plan, results, samples, j, a, context)
    print_summary(result, a, sys.stdout)
    return int(result["exit_code"])


def _requests_per_arrival(name: str, keys: dict[str, Any], bad_share: float) -> float:
    """Requests per arrival over the whole step (a day mix's hours weighted by their rates)."""
    scen = scenario_named(name, keys)
    points = [(i + 0.5) / 24 for i in range(24)]
    weights = [scen.shape(t) for t in points]
    return sum(scen.requests_per_arrival(bad_share, t) * w for t, w in zip(points, weights)) / sum(weights)


def print_summary(result: dict[str, Any], a: capacity.Assumptions, out: Any) -> None:
    out.write("\n")
    for name, s in result["scenarios"].items():
        gen = s["generator"]
        out.write(f"{name}: knee {s['knee_rps'] if s['knee_rps'] is not None else 'none'} req/s, "
                  f"p99 at knee {s['p99_ms_at_knee']} ms ({s['limited_by']})\n")
        for step in s["steps"]:
            out.write(f"  step {step['step']}: offered {step['rate_rps']:g}, answered {step['throughput_rps']:g} req/s, "
                      f"p50 {step['p50_ms']} p95 {step['p95_ms']} p99 {step['p99_ms']} ms, errors "
                      f"{step['error_rate']:.3%}, generator CPU {step['generator']['cpu_max']}"
                      f"{' GENERATOR-BOUND' if step['generator']['bound'] else ''}\n")
        if gen["cpu_ms_per_request"]:
            out.write(f"  generator: {gen['cpu_ms_per_request']:.3f} ms CPU per request -> ceiling about "
                      f"{gen['ceiling_rps']:,} req/s with {gen['processes']} process(es)\n")
        if s.get("sizing"):
            out.write(f"  sizing: {capacity.describe(s['sizing'])}\n")
    limited = sum(n for s in result["scenarios"].values() for step in s["steps"]
                  for e, n in step["errors"].items() if e.startswith("HTTP 429"))
    if limited:
        out.write(f"note: {limited:,} answers were HTTP 429 (the per-key rate limit): the service's limiter, not its "
                  "capacity; start the demo with --rate-limit 1000000 to measure the rest\n")
    capacity.print_assumptions(a, out)
    national = result["national"]
    if national["sizing"]:
        out.write(f"national sizing (on {national['sizing_basis']}): {capacity.describe(national['sizing'])}\n")
    stress = result.get("stress")
    if stress:
        out.write(f"stress {stress['scans_per_s']:,.0f} scans/s at p99 <= {stress['slo_p99_ms']:g} ms: "
                  + (capacity.describe(stress["sizing"]) if stress.get("sizing") else stress.get("why", "-")) + "\n")
    out.write(f"{result['verdict']}\nexit code {result['exit_code']}; report: report.json, report.html, "
              f"{', '.join(result['plots'])}\n")
    out.flush()


# -- the generator's own ceiling -------------------------------------------------------------


def ceiling_parser(sub: Any) -> None:
    p = sub.add_parser("ceiling", help="the generator's own ceiling, against a sink that answers at once",
                       description="Step load of GET /health/live against loadtests/sink.py: the highest rate "
                       "at which the generator keeps its schedule (scheduler lag p99 under --max-lag-ms, its CPU "
                       "under --generator-cpu-max, every arrival answered, no error).")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-lag-ms", type=float, default=10.0,
                   help="scheduler lag p99 above which the generator no longer keeps its schedule (default 10)")
    add_step_flags(p, default_start=500.0)
    p.set_defaults(arrivals="uniform", idle_s=0.0)


def cmd_ceiling(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    port_file = out / "sink.port"
    port_file.unlink(missing_ok=True)
    sink = subprocess.Popen([sys.executable, "-m", "loadtests.sink", "--port-file", str(port_file)],
                            cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if sink.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("loadtests: the sink did not start")
            time.sleep(0.05)
        target = f"http://127.0.0.1:{port_file.read_text().strip()}"
        the_plan = plans.build(["probe"], _steps(args), None, bad_share=0.0, closed_pace=10.0,
                               **_settings(args, target))
        watcher = Monitor([Watched("sink", sink.pid)], None, 0.5).start()
        try:
            results = run_generators(the_plan, out, watcher)
        finally:
            samples = watcher.stop()
    finally:
        sink.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sink.wait(timeout=10)
        if sink.poll() is None:
            sink.kill()
    j = report.Judgement(slo_p99_ms=1e9, max_error_rate=1.0, generator_cpu_max=args.generator_cpu_max / 100.0)
    by_phase: dict[int, list[dict[str, Any]]] = {}
    for r in results["phases"]:
        by_phase.setdefault(r["phase"], []).append(r)
    steps = [report.analyse_phase(ph, by_phase.get(ph["id"], []), samples, results["t0"], j)
             for ph in the_plan["phases"]]
    kept = [s for s in steps if s["requests"] and s["error_rate"] == 0 and not s["generator"]["bound"]
            and (s["generator"]["lag_p99_ms"] or 0.0) <= args.max_lag_ms
            and s["throughput_rps"] * s["window_s"] >= 0.95 * s["generator"]["arrivals"]]
    ceiling = max((s["throughput_rps"] for s in kept), default=None)
    summary = {"generators": args.generators, "ceiling_rps": ceiling,
               "steps": [{k: s[k] for k in ("rate_rps", "throughput_rps", "p99_ms", "error_rate")}
                         | {"generator_cpu": s["generator"]["cpu_max"], "lag_p99_ms": s["generator"]["lag_p99_ms"],
                            "sink_cpu": next((c for n, c in s["cpu_cores"].items() if n.startswith("sink")), None)}
                         for s in steps]}
    (out / "ceiling.json").write_text(json.dumps(summary, indent=1))
    for s in summary["steps"]:
        print(f"  offered {s['rate_rps']:g}: answered {s['throughput_rps']:g} req/s, generator CPU "
              f"{s['generator_cpu']}, sink CPU {s['sink_cpu']}, scheduler lag p99 {s['lag_p99_ms']} ms, "
              f"p99 {s['p99_ms']} ms")
    print(f"generator ceiling with {args.generators} process(es): "
          + (f"{ceiling:,.0f} req/s" if ceiling else "below the first step") + f" -> {out / 'ceiling.json'}")
    return 0 if ceiling else 1


def report_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="rebuild report.json/html and plots from a run's raw files")
    p.add_argument("dir", type=Path)
    p.add_argument("--max-error-rate", type=float, default=0.001)
    p.add_argument("--slo-min-rps", type=float, default=0.0)
    p.add_argument("--generator-cpu-max", type=float, default=80.0)
    p.add_argument("--allow-generator-bound", action="store_true")
    capacity.add_flags(p)


def cmd_report(args: argparse.Namespace) -> int:
    a = capacity.from_args(args)
    j = report.Judgement(slo_p99_ms=args.slo_p99_ms, max_error_rate=args.max_error_rate,
                         slo_min_rps=args.slo_min_rps, generator_cpu_max=args.generator_cpu_max / 100.0,
                         allow_generator_bound=args.allow_generator_bound)
    result = report.rebuild(args.dir, j, a)
    print_summary(result, a, sys.stdout)
    return int(result["exit_code"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser(sub)
    ceiling_parser(sub)
    report_parser(sub)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="a progress bar on stderr (default: when stderr is a terminal; never on CI)")
    args = parser.parse_args(argv)
    from verifier.lib.progress import configure_progress, progress_override
    from verifier.lib.settings import Settings

    settings = Settings.from_env(progress=progress_override(args.progress))
    configure_progress(settings.progress, settings.log_format)
    return {"run": cmd_run, "ceiling": cmd_ceiling, "report": cmd_report}[args.command](args)
