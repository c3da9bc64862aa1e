"""Prometheus metrics, one registry per app so tests (and several apps in one process) never clash.

Why a class and not module-level collectors: prometheus_client's default registry is global and
refuses a second collector with the same name, which breaks any test that builds two apps. A registry of
our own lacks the standard `process_*` (memory, CPU, open files), `python_info` and `python_gc_*` series
the default one has, so they are registered on it too: dashboards and alerts built for them keep working.
"""
from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]


class Metrics:
    """The bot's counters, gauges and histograms, registered on their own `CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """`registry`: one to add the bot's metrics to, which has the process, platform and GC ones already (as
        prometheus_client's default registry does); by default a new one, with them."""
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = r = registry
        self.events_received = Counter(
            "reviewbot_events_received", "Webhook deliveries answered, by event kind and outcome "
            "(queued, duplicate, ignored, rejected; spooled: kept on local disk while the database is unavailable, "
            "answered 202; unstored: neither stored nor spooled, answered 503)", ["kind", "outcome"], registry=r,
        )
        self.events_processed = Counter(
            "reviewbot_events_processed", "Events handled successfully by a worker", ["kind"], registry=r
        )
        self.events_failed = Counter(
            "reviewbot_events_failed", "Event attempts that raised, by kind and result (retry, dead)",
            ["kind", "result"], registry=r,
        )
        self.queue_depth = Gauge("reviewbot_queue_depth", "Stored events by status (absent while the database "
                                 "does not answer)", ["status"], registry=r)
        self.database_up = Gauge("reviewbot_database_up", "1 if the database answered the last /healthz or "
                                 "/metrics read within 3 s, else 0", registry=r)
        self.spool_files = Gauge("reviewbot_spool_files", "Deliveries waiting in the local spool for the "
                                 "database", registry=r)
        self.suggestion_latency = Histogram(
            "reviewbot_suggestion_latency_seconds", "From webhook receipt to the suggestion being posted",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900), registry=r,
        )
        self.dispatch_seconds = Histogram(
            "reviewbot_dispatch_seconds", "Time one event's handlers took", ["kind"], registry=r
        )
        self.gitlab_api_errors = Counter(
            "reviewbot_gitlab_api_errors", "GitLab API calls that failed, by HTTP status", ["status"], registry=r
        )

    def set_queue_depth(self, depth: dict[str, int] | None) -> None:
        """Update the queue-depth gauge from `EventQueue.depth()`; None (the database did not answer) removes
        its values: the last ones read would pass for today's."""
        if depth is None:
            self.queue_depth.clear()
            return
        for status, count in depth.items():
            self.queue_depth.labels(status=status).set(count)

    def render(self) -> bytes:
        """The text exposition format for GET /metrics."""
        return generate_latest(self.registry)
