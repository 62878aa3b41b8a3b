"""Configuration of the broker: one frozen, typed dataclass (STYLE.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .audit import AuditBounds
from .errors import BrokerConfigError

__all__ = ["PROFILES", "BrokerConfig", "Profile", "Violation", "parse_bool"]

Violation = Literal["notice", "gentle"]
#: ``provider``: SPEC §4a on (the provider's broker); ``mqtt``: plain MQTT 3.1.1.
Profile = Literal["provider", "mqtt"]
PROFILES: tuple[Profile, ...] = ("provider", "mqtt")


def parse_bool(text: str) -> bool:
    """Explicit boolean parsing: ``"false"`` is false (unlike moto's env handling)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise BrokerConfigError(f"not a boolean: {text!r} (use true/false)")


@dataclass(frozen=True)
class BrokerConfig:
    """Everything the broker's behaviour depends on; each field is read somewhere."""

    host: str = "127.0.0.1"
    """Address of every listener (loopback by default)."""
    port: int = 1883
    """MQTT over TCP; ``0`` picks a free port."""
    ws_port: int | None = None
    """MQTT over WebSocket when set (``0``: a free port)."""
    tls_port: int | None = None
    """MQTT over TLS when set; needs ``tls_cert`` and ``tls_key``."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    authserver_url: str | None = None
    """Base URL of the AuthServer whose bootstrap and revocation feed the broker follows."""
    auth_enabled: bool = True
    """``False``: no credential or ACL checks at all (the benchmark baseline)."""
    profile: Profile = "provider"
    """``provider``: what the provider's broker does not do is refused or changed as it
    does (SPEC §4a: no wills, no retained messages, parent topics, topic, subscription
    and message limits, QoS 2 on a persistent session granted as 1); ``mqtt``: plain
    MQTT 3.1.1 for conformance work.  Tokens, ACLs, notices and P2P apply in both, and
    the fidelity report counts the same uses in both (docs/fidelity.md)."""
    violation: Violation = "notice"
    """``notice``: invalid notice 4/5 then disconnect, as the provider does;
    ``gentle``: SUBACK 0x80 for a refused filter, a refused publish is dropped."""
    expire_notice_lead: float = 300.0
    """Virtual seconds before a token's expiry at which ``$SYS/tokenExpireNotice`` goes out."""
    metrics_port: int | None = None
    """Serve Prometheus metrics over HTTP on this port when set (``0``: a free port)."""
    connect_timeout: float = 10.0
    """Real seconds a new connection may take to send CONNECT before it is closed."""
    feed_poll_timeout: float = 10.0
    """Real seconds of one long poll of the AuthServer feed (≤ 30)."""
    bootstrap_timeout: float = 10.0
    """Real seconds ``run_broker`` waits for the first bootstrap before serving anyway
    (CONNECTs are then answered "server unavailable" until the keys arrive)."""
    max_offline_messages: int = 1000
    """QoS 1/2 messages kept per disconnected persistent session; older ones are dropped."""
    audit: AuditBounds = field(default_factory=AuditBounds)
    """The device audit's bounds (docs/your-appserver.md "The device audit");
    ``MQTT_TOKEN_SIM_BROKER_AUDIT_BOUNDS="tight_retry_run=5,early_fraction=0.6"`` (the
    flag ``--audit-bounds`` from the environment, docs/stack.md "Environment")."""
    ignore_revocations: bool = False
    """A *defect switch* of the scenarios (docs/scenarios.md "Defects"), never a setting
    for real use: the revocations of the AuthServer's bootstrap and feed are skipped, so
    revoked tokens stay connected and keep connecting (SPEC §3c broken on purpose)."""

    def __post_init__(self) -> None:
        for name in ("port", "ws_port", "tls_port", "metrics_port"):
            value = getattr(self, name)
            if value is not None and not (0 <= value <= 65535):
                raise BrokerConfigError(f"{name} must be 0..65535, got {value!r}")
        if self.profile not in PROFILES:
            raise BrokerConfigError(f"profile must be provider or mqtt, got {self.profile!r}")
        if self.violation not in ("notice", "gentle"):
            raise BrokerConfigError(f"violation must be notice or gentle, got {self.violation!r}")
        if not self.expire_notice_lead >= 0:
            raise BrokerConfigError("expire_notice_lead must be >= 0 seconds")
        if not self.connect_timeout > 0:
            raise BrokerConfigError("connect_timeout must be > 0 seconds")
        if not 0 < self.feed_poll_timeout <= 30:
            raise BrokerConfigError("feed_poll_timeout must be in (0, 30] seconds")
        if not self.bootstrap_timeout >= 0:
            raise BrokerConfigError("bootstrap_timeout must be >= 0 seconds")
        if self.max_offline_messages < 0:
            raise BrokerConfigError("max_offline_messages must be >= 0")
        if self.tls_port is not None and (self.tls_cert is None or self.tls_key is None):
            raise BrokerConfigError("a TLS listener needs tls_cert and tls_key")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise BrokerConfigError("tls_cert and tls_key go together")
        if self.auth_enabled and self.authserver_url is not None:
            url = self.authserver_url
            if not url.startswith(("http://", "https://")):
                raise BrokerConfigError(f"authserver_url must be http(s)://..., got {url!r}")
