"""Prometheus metrics of one ``verifier notify`` process (``--metrics-port``).

Each process counts its own deliveries (sum them across instances); the gauges
(queue depth, change-stream lag, dead letters, paused endpoints) are read from the
store every few seconds and are the same from every instance (take any, or max).
Endpoints are labelled by subscription id, never by URL.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["NotifyMetrics"]

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class NotifyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attempts = Counter("pv_notify_attempts", "Delivery attempts, by endpoint (subscription) and outcome",
                                ("endpoint", "outcome"), registry=r)
        self.failures = Counter("pv_notify_failures", "Failed delivery attempts, by endpoint and reason",
                                ("endpoint", "reason"), registry=r)
        self.dead_lettered = Counter("pv_notify_dead_lettered", "Messages dead-lettered, by endpoint",
                                     ("endpoint",), registry=r)
        self.delivery_latency = Histogram(
            "pv_notify_delivery_latency_seconds", "From the event (upstream change, reminder) to its delivery",
            buckets=LATENCY_BUCKETS, registry=r)
        self.enqueued = Counter("pv_notify_enqueued", "Messages put in the outbox, by event type", ("type",),
                                registry=r)
        self.gaps = Counter("pv_notify_gaps", "Gaps found in the change stream (changes without a message)",
                            registry=r)
        self.queue_depth = Gauge("pv_notify_queue_depth", "Messages in the outbox, not yet delivered, by endpoint",
                                 ("endpoint",), registry=r)
        self.stream_lag = Gauge("pv_notify_change_stream_lag", "Change-stream entries not yet fanned out",
                                registry=r)
        self.dead_letters = Gauge("pv_notify_dead_letters", "Dead letters held", registry=r)
        self.paused = Gauge("pv_notify_paused_endpoints", "Endpoints paused for their failures", registry=r)
        self.partitions_owned = Gauge("pv_notify_partitions_owned", "Outbox partitions this process delivers",
                                      registry=r)
        self.leader = Gauge("pv_notify_leader", "1 when this process leads (fan-out, reminders, replays)",
                            registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
