"""Prometheus metrics of one AuthServer app, in its own registry (several servers can
live in one test process; the global registry would mix them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mqtt_authserver_requests",
            "Token API requests by operation (apply|revoke|query) and answer code "
            "(the legacy numeric code, or reset/hang for injected transport faults).",
            ["operation", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mqtt_authserver_request_seconds",
            "Token API request handling time, real seconds.",
            ["operation"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        self.revoked = Gauge(
            "mqtt_authserver_revoked_tokens",
            "Revoked tokens not yet expired (what brokers must remember).",
            registry=self.registry,
        )
        self.feed_seq = Gauge(
            "mqtt_authserver_feed_seq", "Last sequence number of the feed.", registry=self.registry
        )
        #: (operation, code) -> the two labelled series :meth:`record` updates.  Looking a
        #: series up by its labels costs more than updating it, on every request; the
        #: keys are bounded (operations x the error tree's codes).
        self._series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        # Pre-create the success series so a scrape shows them at zero.
        for op in ("apply", "revoke", "query"):
            self.requests.labels(op, "200")

    def record(self, operation: str, code: str, seconds: float) -> None:
        """One answered token API request: its count by code, its handling time."""
        series = self._series.get((operation, code))
        if series is None:
            series = (self.requests.labels(operation, code), self.latency.labels(operation))
            self._series[(operation, code)] = series
        count, latency = series
        count.inc()
        latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
