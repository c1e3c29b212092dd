"""Turn measured per-core rates into the cores a national peak needs.

    python3 loadtests/capacity.py [--results benchmarks/results/api.json] [--holders 1000000] [--json]

The per-core rates come from the API benchmark (``benchmarks/test_bench_api.py``: one
uvicorn worker, which is one core's worth of work): cold ``POST /v1/verify/qr``
requests/s (every scan pays the signature check: the conservative figure for all
single verifications, card reads and manual checks included) and bulk look-up
permits/s. Every assumption about the traffic is a flag with its default stated in
``capacity.md``; change them and rerun.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE.parent / "benchmarks" / "results" / "api.json"


@dataclass(frozen=True)
class Assumptions:
    holders: int = 1_000_000
    """Foreigners holding a work permit (order of magnitude of the registry)."""
    exit_entry_per_year: float = 2.0
    """Scans or card reads per holder per year at exit-entry departments (residence permit)."""
    service_hall_per_year: float = 12.0
    """ES1 scans or card reads per holder per year for "one card" services."""
    social_insurance_per_year: float = 4.0
    """Manual checks and look-ups per holder per year at social insurance agencies."""
    partner_checks_per_day: float = 1.0
    """Bulk re-checks of each holder per day by employers' HR platforms (in 1,000-id requests)."""
    working_days: int = 250
    working_hours: float = 8.0
    peak_hour_factor: float = 2.0
    """Busiest hour of a working day against its average hour."""
    peak_second_factor: float = 3.0
    """Busiest second of the busiest hour against its average second."""
    batch_window_hours: float = 2.0
    """The nightly window in which partners run their bulk checks."""
    stress_factor: float = 100.0
    """Margin for what the averages miss: campaigns, retry storms after an outage, growth."""
    utilisation: float = 0.5
    """Share of a core the API may use at peak (leaves room for latency, GC, Redis, the OS)."""


@dataclass(frozen=True)
class Sizing:
    scans_per_s_peak: float
    bulk_permits_per_s_peak: float
    cores_for_scans: float
    cores_for_bulk: float
    cores_at_peak: float
    cores_with_stress: float
    api_processes: int
    """Worker processes to deploy: the stressed figure, and never fewer than 2 hosts x 2 workers."""


def size(a: Assumptions, verify_per_core: float, bulk_permits_per_core: float) -> Sizing:
    scans_per_year = a.holders * (a.exit_entry_per_year + a.service_hall_per_year + a.social_insurance_per_year)
    scans_per_working_s = scans_per_year / a.working_days / (a.working_hours * 3600)
    scans_peak = scans_per_working_s * a.peak_hour_factor * a.peak_second_factor
    bulk_peak = a.holders * a.partner_checks_per_day / (a.batch_window_hours * 3600) * a.peak_second_factor
    cores_scans = scans_peak / (verify_per_core * a.utilisation)
    cores_bulk = bulk_peak / (bulk_permits_per_core * a.utilisation)
    cores = cores_scans + cores_bulk
    stressed = cores * a.stress_factor
    return Sizing(
        scans_per_s_peak=round(scans_peak, 1),
        bulk_permits_per_s_peak=round(bulk_peak, 1),
        cores_for_scans=round(cores_scans, 4),
        cores_for_bulk=round(cores_bulk, 4),
        cores_at_peak=round(cores, 4),
        cores_with_stress=round(stressed, 2),
        api_processes=max(4, math.ceil(stressed)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the API benchmark's api.json")
    parser.add_argument("--verify-per-core", type=float, default=None,
                        help="cold verifications/s of one worker (default: from --results)")
    parser.add_argument("--bulk-permits-per-core", type=float, default=None,
                        help="bulk look-up permits/s of one worker (default: from --results)")
    parser.add_argument("--json", action="store_true")
    for name, value in asdict(Assumptions()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)

    verify, bulk = args.verify_per_core, args.bulk_permits_per_core
    if verify is None or bulk is None:
        results = json.loads(args.results.read_text())
        verify = verify or results["verify_qr"]["api_cold_saturating"]["requests_per_s"]
        bulk = bulk or results["lookup"]["api_permits_per_s"]
    assumptions = Assumptions(**{k: getattr(args, k) for k in asdict(Assumptions())})
    sizing = size(assumptions, verify, bulk)
    if args.json:
        print(json.dumps({"per_core": {"verify_per_s": verify, "bulk_permits_per_s": bulk},
                          "assumptions": asdict(assumptions), "sizing": asdict(sizing)}, indent=2))
        return 0
    print(f"measured per core: {verify:,.0f} cold verifications/s, {bulk:,.0f} bulk look-up permits/s")
    print(f"peak: {sizing.scans_per_s_peak:,} scans/s, {sizing.bulk_permits_per_s_peak:,} bulk permits/s "
          f"({assumptions.holders:,} holders)")
    print(f"cores at peak (utilisation {assumptions.utilisation:.0%}): {sizing.cores_at_peak} "
          f"(scans {sizing.cores_for_scans}, bulk {sizing.cores_for_bulk})")
    print(f"with a {assumptions.stress_factor:g}x stress margin: {sizing.cores_with_stress} cores; "
          f"deploy {sizing.api_processes} API worker processes (at least 2 hosts x 2 workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
