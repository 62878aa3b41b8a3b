"""Prometheus metrics of the broker, in a registry of its own, served over HTTP by flag."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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

    def refused_login(self, source: str) -> None:
        """Count one refused CONNECT from ``source`` (an address, ``""`` if unknown)."""
        label = source or "unknown"
        if source and label not in self._sources:
            if len(self._sources) >= MAX_SOURCES:
                label = "other"
            else:
                self._sources.add(label)
        self.refused_logins.labels(label).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (tests and scenarios); 0 when never set."""
        found = self.registry.get_sample_value(name, labels or None)
        return 0.0 if found is None else float(found)


async def serve_metrics(metrics: BrokerMetrics, host: str, port: int) -> tuple[web.AppRunner, int]:
    async def handle(_: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses  # the bound (host, port, ...) of each socket
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound
