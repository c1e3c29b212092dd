"""Prometheus metrics that are cheap on the request path and correct across workers.

prometheus-client's middleware costs ~25 µs a request, and its default registry
counts per process: behind several uvicorn workers a scrape would see whichever
worker answered. Instead each worker bumps plain dict counters (well under a
microsecond), and a background task adds the deltas to one Redis hash every flush
(pipelined, with the audit flush). ``GET /metrics`` renders that hash through
prometheus-client's exposition code, so every worker answers with the totals of
all workers. Gauges (sync lag, index age) are read at scrape time.

If Redis is unreachable the deltas stay in the worker and are added on the next
successful flush; a worker killed with -9 loses at most one flush interval of counts.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

__all__ = ["METRICS_KEY", "Metrics", "LATENCY_BUCKETS"]

METRICS_KEY = "pv:metrics"
"""The Redis hash holding the totals of every worker (field: ``name|labels``)."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# name -> (kind, help, label names)
_DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pv_requests": ("counter", "HTTP requests answered, by route, method and status", ("route", "method", "status")),
    "pv_request_duration_seconds": ("histogram", "Server time per request, by route", ("route",)),
    "pv_verdicts": ("counter", "Verdicts given, by profile and result code", ("profile", "result")),
    "pv_signature_cache": ("counter", "fastpath verdict cache (signature stage) outcomes", ("outcome",)),
    "pv_near_cache": ("counter", "Per-worker permit status near-cache outcomes", ("outcome",)),
    "pv_audit_records": ("counter", "Audit records written to the stream", ()),
}


class Metrics:
    """One worker's counters: bump on the request path, flush deltas to Redis."""

    __slots__ = ("_counts", "_sums", "_buckets")

    def __init__(self) -> None:
        self._counts: defaultdict[tuple[str, tuple[str, ...]], int] = defaultdict(int)
        self._sums: defaultdict[tuple[str, tuple[str, ...]], float] = defaultdict(float)
        self._buckets: defaultdict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(
            lambda: [0] * (len(LATENCY_BUCKETS) + 1)
        )

    def inc(self, name: str, labels: tuple[str, ...] = (), amount: int = 1) -> None:
        self._counts[(name, labels)] += amount

    def observe(self, name: str, labels: tuple[str, ...], seconds: float) -> None:
        key = (name, labels)
        self._buckets[key][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sums[key] += seconds

    def pending(self) -> bool:
        return bool(self._counts or self._buckets)

    def take(self) -> dict[str, float]:
        """The deltas since the last take, as hash fields; the caller adds them to Redis."""
        fields: dict[str, float] = {}
        for (name, labels), count in self._counts.items():
            fields[_field(name, labels)] = count
        for (name, labels), buckets in self._buckets.items():
            for index, count in enumerate(buckets):
                if count:
                    fields[_field(name + ":b" + str(index), labels)] = count
            fields[_field(name + ":sum", labels)] = self._sums[(name, labels)]
        self._counts.clear()
        self._buckets.clear()
        self._sums.clear()
        return fields

    def give_back(self, fields: dict[str, float]) -> None:
        """A flush failed: keep its deltas for the next one."""
        for field, value in fields.items():
            name, labels = _parse(field)
            base, _, part = name.partition(":")
            if not part:
                self._counts[(name, labels)] += int(value)
            elif part == "sum":
                self._sums[(base, labels)] += value
            else:
                self._buckets[(base, labels)][int(part[1:])] += int(value)


def _field(name: str, labels: tuple[str, ...]) -> str:
    # Label values are route templates, codes and statuses: no '|' or '\x1f' in them.
    return name + "|" + "\x1f".join(labels)


def _parse(field: str) -> tuple[str, tuple[str, ...]]:
    name, _, rest = field.partition("|")
    return name, tuple(rest.split("\x1f")) if rest else ()


def render(totals: dict[bytes | str, bytes | str], gauges: Iterable[GaugeMetricFamily] = ()) -> bytes:
    """Prometheus text exposition of the totals hash plus scrape-time gauges."""
    counts: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for raw_field, raw_value in totals.items():
        field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
        try:
            value = float(raw_value)
        except ValueError:
            continue
        name, labels = _parse(field)
        counts[name][labels] = value

    families: list[Any] = []
    for name, (kind, help_text, label_names) in _DEFINITIONS.items():
        if kind == "counter":
            family = CounterMetricFamily(name, help_text, labels=label_names)
            for labels, value in sorted(counts.get(name, {}).items()):
                if len(labels) == len(label_names):
                    family.add_metric(labels, value)
            families.append(family)
        else:
            family_h = HistogramMetricFamily(name, help_text, labels=label_names)
            sums = counts.get(name + ":sum", {})
            for labels in sorted(sums):
                if len(labels) != len(label_names):
                    continue
                cumulative = 0.0
                buckets = []
                for index, bound in enumerate((*LATENCY_BUCKETS, float("inf"))):
                    cumulative += counts.get(f"{name}:b{index}", {}).get(labels, 0.0)
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                family_h.add_metric(list(labels), buckets, sums[labels])
            families.append(family_h)
    families.extend(gauges)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families))
    return generate_latest(registry)


class _Static:
    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


def gauge(name: str, help_text: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    if value is not None:
        family.add_metric([], value)
    return family


GaugeSource = Callable[[], Iterable[GaugeMetricFamily]]
