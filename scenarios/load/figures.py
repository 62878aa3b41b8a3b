"""What the workers report and what the master makes of it: the pure core.

Every worker sends a :class:`WorkerReport` to the master (Locust's custom messages,
type :data:`REPORT_MESSAGE`) every half second while a storm round is on, else every
two seconds, and once more when its users stop.  The master keeps the newest per
worker and derives the run's figures from them: users and connections, descriptors
and CPU per user, whether any worker was overloaded (:mod:`.health`), and per storm
round (SPEC §7, reconnect storm) whether every client lost the broker and came back,
how long that took and how much token traffic it caused.  No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "REPORT_MESSAGE",
    "StormRound",
    "Totals",
    "WorkerReport",
    "storm_complete",
    "storm_round",
    "totals",
]

REPORT_MESSAGE = "mqtt-token-sim:worker-report"


@dataclass(frozen=True)
class WorkerReport:
    worker: str = ""
    pid: int = 0
    sent_at: float = 0.0  # wall clock of the worker (time.time())
    users: int = 0  # MQTT users alive
    prepared: int = 0  # users holding a token (connected or waiting to connect)
    connected: int = 0  # users with a session (CONNACK accepted, not lost since)
    last_connect: float | None = None  # wall clock of the newest accepted CONNECT
    fds: int = 0
    fd_limit: int = 0
    #: TCP sockets of this process connected to the broker (psutil), None if not sampled
    mqtt_sockets: int | None = None
    #: descriptors open before the first user started
    fds_at_start: int = 0
    rss_kb: int = 0  # resident memory of the process
    rss_kb_at_start: int = 0  # ... before the first user started
    cpu_s: float = 0.0  # CPU seconds since the test started
    wall_s: float = 0.0  # seconds since the test started
    peak_cpu_share: float = 0.0
    peak_wait_share: float = 0.0  # waited for a CPU / wall (a loaded machine)
    peak_lag_s: float = 0.0
    peak_gc_pause_s: float = 0.0
    overloaded: bool = False  # overloaded at any time of the test
    overload_reasons: tuple[str, ...] = ()
    #: sessions the broker or the network ended outside a storm round
    unexpected_losses: int = 0
    storm_round: int = 0  # the round this worker is armed for (0: none yet)
    storm_lost: int = 0  # users whose session ended since the round was armed
    storm_back: int = 0  # of those, users connected again
    storm_first_loss: float | None = None  # wall clock
    storm_last_back: float | None = None  # wall clock
    storm_token_asks: int = 0  # AppServer token requests by devices in the round
    storm_connect_failures: int = 0  # refused or failed reconnect attempts in the round

    def to_message(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["overload_reasons"] = list(self.overload_reasons)
        return doc

    @classmethod
    def from_message(cls, doc: Mapping[str, Any]) -> WorkerReport:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in doc.items() if k in known}
        kw["overload_reasons"] = tuple(kw.get("overload_reasons") or ())
        return cls(**kw)


@dataclass(frozen=True)
class Totals:
    workers: int
    users: int
    prepared: int
    connected: int
    fds: int
    mqtt_sockets: int | None
    #: descriptors per user above what each worker held before its first user
    fds_per_user: float | None
    #: CPU seconds per user per second of test (share of one core per user)
    cpu_per_user: float | None
    #: resident memory per user (KB) above what each worker held before its first user
    rss_kb_per_user: float | None
    peak_cpu_share: float
    peak_wait_share: float
    peak_lag_s: float
    peak_gc_pause_s: float
    overloaded_workers: tuple[str, ...]
    overload_reasons: tuple[str, ...]
    unexpected_losses: int

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["overloaded_workers"] = list(self.overloaded_workers)
        doc["overload_reasons"] = list(self.overload_reasons)
        return doc


def totals(reports: Iterable[WorkerReport]) -> Totals:
    rs = list(reports)
    users = sum(r.users for r in rs)
    sockets = [r.mqtt_sockets for r in rs]
    cpu_user_s = sum(r.cpu_s / r.wall_s for r in rs if r.wall_s > 0)
    extra_fds = sum(max(0, r.fds - r.fds_at_start) for r in rs)
    reasons: list[str] = []
    for r in rs:
        reasons.extend(x for x in r.overload_reasons if x not in reasons)
    return Totals(
        workers=len(rs),
        users=users,
        prepared=sum(r.prepared for r in rs),
        connected=sum(r.connected for r in rs),
        fds=sum(r.fds for r in rs),
        mqtt_sockets=None if not rs or None in sockets else sum(s or 0 for s in sockets),
        fds_per_user=extra_fds / users if users else None,
        cpu_per_user=cpu_user_s / users if users else None,
        rss_kb_per_user=(
            sum(max(0, r.rss_kb - r.rss_kb_at_start) for r in rs) / users if users else None
        ),
        peak_cpu_share=max((r.peak_cpu_share for r in rs), default=0.0),
        peak_wait_share=max((r.peak_wait_share for r in rs), default=0.0),
        peak_lag_s=max((r.peak_lag_s for r in rs), default=0.0),
        peak_gc_pause_s=max((r.peak_gc_pause_s for r in rs), default=0.0),
        overloaded_workers=tuple(r.worker for r in rs if r.overloaded),
        overload_reasons=tuple(reasons),
        unexpected_losses=sum(r.unexpected_losses for r in rs),
    )


def storm_complete(reports: Iterable[WorkerReport], round_no: int, clients: int) -> bool:
    """Every worker is on ``round_no`` and every one of ``clients`` lost its session
    and is connected again."""
    rs = list(reports)
    if not rs or any(r.storm_round != round_no for r in rs):
        return False
    lost = sum(r.storm_lost for r in rs)
    back = sum(r.storm_back for r in rs)
    connected = sum(r.connected for r in rs)
    return lost >= clients and back >= clients and connected >= clients


@dataclass(frozen=True)
class StormRound:
    """One storm: every client loses the broker at ``kicked_at`` and comes back."""

    round: int
    clients: int
    lever: str  # "kick" (the broker drops everyone) or "drop" (clients cut at once)
    kicked_at: float  # wall clock of the master
    lost: int
    back: int
    complete: bool
    #: kick -> the last client's CONNACK (None when not every client came back)
    seconds_back: float | None
    #: kick -> the first loss a client saw
    first_loss_after_s: float | None
    device_token_asks: int
    connect_failures: int
    #: from the servers' /admin/metrics (None: not measured)
    appserver_token_requests: int | None = None
    upstream_applies: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def token_traffic(self) -> int:
        """Token requests the storm caused (devices' own count, else the AppServer's)."""
        return max(self.device_token_asks, self.appserver_token_requests or 0)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["token_traffic"] = self.token_traffic
        return doc


def storm_round(
    reports: Iterable[WorkerReport],
    *,
    round_no: int,
    clients: int,
    lever: str,
    kicked_at: float,
    appserver_token_requests: int | None = None,
    upstream_applies: int | None = None,
) -> StormRound:
    rs = [r for r in reports if r.storm_round == round_no]
    lost = sum(r.storm_lost for r in rs)
    back = sum(r.storm_back for r in rs)
    complete = storm_complete(rs, round_no, clients) and len(rs) > 0
    backs = [r.storm_last_back for r in rs if r.storm_last_back is not None]
    losses = [r.storm_first_loss for r in rs if r.storm_first_loss is not None]
    return StormRound(
        round=round_no,
        clients=clients,
        lever=lever,
        kicked_at=kicked_at,
        lost=lost,
        back=back,
        complete=complete,
        seconds_back=max(0.0, max(backs) - kicked_at) if complete and backs else None,
        first_loss_after_s=max(0.0, min(losses) - kicked_at) if losses else None,
        device_token_asks=sum(r.storm_token_asks for r in rs),
        connect_failures=sum(r.storm_connect_failures for r in rs),
        appserver_token_requests=appserver_token_requests,
        upstream_applies=upstream_applies,
    )
