"""Prometheus metrics of the broker, in a registry of its own, served over HTTP by flag
(``/metrics``, ``/health``, and as JSON the fidelity report at ``/fidelity`` and the
device audit at ``/audit``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from sim.shared.net import is_loopback_peer

from .audit import AuditReport
from .fidelity import FidelityLedger

__all__ = ["MAX_SOURCES", "BrokerMetrics", "serve_metrics"]

#: Source addresses counted one by one in ``mqtt_broker_refused_logins_total``; refusals
#: from any further address are counted as ``source="other"``, so a flood from many
#: addresses cannot grow the metrics (label cardinality stays bounded).
MAX_SOURCES = 64


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("mqtt_broker_connections", "Connected MQTT clients", registry=r)
        self.connects = Counter(
            "mqtt_broker_connects_total",
            "CONNECT outcomes (accepted, or the refusal reason)",
            ["outcome"],
            registry=r,
        )
        self.disconnects = Counter(
            "mqtt_broker_disconnects_total", "Disconnects by reason", ["reason"], registry=r
        )
        self.uploads = Counter(
            "mqtt_broker_uploads_total",
            "$SYS/uploadToken outcomes (ok, or the refusal reason)",
            ["outcome"],
            registry=r,
        )
        self.notices = Counter(
            "mqtt_broker_notices_total",
            "Notices sent, by kind (expire, invalid) and code",
            ["kind", "code"],
            registry=r,
        )
        self.violations = Counter(
            "mqtt_broker_violations_total",
            "Refused PUBLISH/SUBSCRIBE by action and notice code",
            ["action", "code"],
            registry=r,
        )
        self.feed_events = Counter(
            "mqtt_broker_feed_events_total",
            "AuthServer feed answers applied (events, bootstrap, error)",
            ["kind"],
            registry=r,
        )

        self.refused_logins = Counter(
            "mqtt_broker_refused_logins_total",
            f"Refused CONNECTs by source address (the first {MAX_SOURCES} addresses seen;"
            " 'other' for the rest, 'unknown' where the transport does not say)",
            ["source"],
            registry=r,
        )
        self._sources: set[str] = set()
        self.fidelity = Counter(
            "mqtt_broker_fidelity_uses_total",
            "Uses of a feature the provider's broker lacks (SPEC §4a), by feature",
            ["feature"],
            registry=r,
        )
        self.ledger: FidelityLedger | None = None
        self.audit_findings = Counter(
            "mqtt_broker_audit_findings_total",
            "Client rules broken, by rule (the device audit, GET /audit)",
            ["rule"],
            registry=r,
        )
        self.audit: Callable[[], AuditReport] | None = None

    def refused_login(self, source: str) -> None:
        """Count one refused CONNECT from ``source`` (an address, ``""`` if unknown)."""
        label = source or "unknown"
        if source and label not in self._sources:
            if len(self._sources) >= MAX_SOURCES:
                label = "other"
            else:
                self._sources.add(label)
        self.refused_logins.labels(label).inc()

    def report_fidelity(self, ledger: FidelityLedger) -> None:
        """Expose ``ledger``'s per-client counts (read at scrape time, as bounded as it)."""
        if self.ledger is None:
            self.registry.register(_ClientUses(self))
        self.ledger = ledger

    def report_audit(self, report: Callable[[], AuditReport]) -> None:
        """Serve ``report()`` at ``GET /audit``."""
        self.audit = report

    def count_finding(self, rule: str) -> None:
        self.audit_findings.labels(str(rule)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (tests and scenarios); 0 when never set."""
        found = self.registry.get_sample_value(name, labels or None)
        return 0.0 if found is None else float(found)


class _ClientUses(Collector):
    """``mqtt_broker_fidelity_client_uses_total{instance,client_id,feature}``."""

    def __init__(self, metrics: BrokerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        ledger = self.metrics.ledger
        for instance, client_id, counts in ledger.clients() if ledger is not None else ():
            for feature, count in counts.items():
                family.add_metric([instance, client_id, str(feature)], count)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "mqtt_broker_fidelity_client_uses",
            "Uses of a feature the provider lacks, per client (the most recent clients)",
            labels=["instance", "client_id", "feature"],
        )


async def serve_metrics(metrics: BrokerMetrics, host: str, port: int) -> tuple[web.AppRunner, int]:
    async def handle(_: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def fidelity(request: web.Request) -> web.Response:
        # Client ids of every tenant: an operator's view, loopback peers only.
        if not is_loopback_peer(request.remote):
            return web.json_response({"error": "loopback only"}, status=403)
        ledger = metrics.ledger
        if ledger is None:
            return web.json_response({"error": "no fidelity report"}, status=404)
        return web.json_response(ledger.report().to_json())

    async def audit(request: web.Request) -> web.Response:
        # Client ids and token ids of every tenant: an operator's view, loopback only.
        if not is_loopback_peer(request.remote):
            return web.json_response({"error": "loopback only"}, status=403)
        if metrics.audit is None:
            return web.json_response({"error": "no device audit"}, status=404)
        return web.json_response(metrics.audit().to_json())

    app = web.Application()
    app.router.add_get("/metrics", handle)
    app.router.add_get("/health", health)
    app.router.add_get("/fidelity", fidelity)
    app.router.add_get("/audit", audit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses  # the bound (host, port, ...) of each socket
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound
