"""What each Locust process of a load run holds, and how the processes talk.

One :class:`Runtime` per process (master, worker or a single local process), made at
Locust's ``init`` event (:mod:`.plugin`):

* every process that runs users: the shared AppServer pool (:mod:`.appserver`; through
  ``--adapter FILE`` any AppServer, its users the adapter's ``[clients]``), the
  :class:`~.monitor.GeneratorMonitor`, the registry of MQTT users with their counters
  (connected, lost, back), the storm round it is armed for, the fleet's connect gate,
  and a reporter greenlet that sends a :class:`~.figures.WorkerReport` to the master;
* the master (or the single local process): the newest report of every worker, the
  figures the shapes add (:mod:`.shapes`), the JSON load report (``--load-report``)
  and the exit status.

:meth:`Runtime.timed` is the one way users time a request: ``events.request.measure()``
with the failure attributed by :func:`.health.blame` -- to ``generator:overloaded``
when the generator was the limit, else to the request's own name.

Exit status (set on the master at ``quitting``): **3** when any worker was overloaded
(the run measured the generator, not the stack: its figures are no verdict), else
Locust's own (1 with failures, ``--exit-code-on-error``).
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import gevent
from gevent.event import Event
from locust.runners import MasterRunner, WorkerRunner

from sim.customer.adapter import Adapter, ClientIdentity, load_adapter

from .appserver import AdapterApi, AppServerApi
from .figures import REPORT_MESSAGE, WorkerReport, totals
from .health import (
    GENERATOR_OVERLOADED,
    Blame,
    GeneratorLimits,
    Verdict,
    blame,
    exhausted_resource,
)
from .monitor import GeneratorMonitor, read_sample_counters, rss_kb

__all__ = [
    "EXIT_GENERATOR_LIMIT",
    "FLEET_CONNECT_MESSAGE",
    "STORM_ARM_MESSAGE",
    "STORM_DROP_MESSAGE",
    "GeneratorLimit",
    "Runtime",
    "runtime_of",
]

log = logging.getLogger("mqtt_token_sim.load")

#: Exit status of a run whose generator was the limit.
EXIT_GENERATOR_LIMIT = 3

STORM_ARM_MESSAGE = "mqtt-token-sim:storm-arm"
STORM_DROP_MESSAGE = "mqtt-token-sim:storm-drop"
FLEET_CONNECT_MESSAGE = "mqtt-token-sim:fleet-connect"

_ATTR = "_mqtt_token_sim_runtime"


class GeneratorLimit(Exception):
    """A request failed because the load generator itself was the limit."""


class Device(Protocol):
    """What the runtime needs of an MQTT user (see :mod:`.users`)."""

    @property
    def prepared(self) -> bool: ...

    @property
    def connected(self) -> bool: ...

    def drop(self) -> None: ...


def _adapter_of(spec: str) -> Adapter | None:
    """The adapter file ``spec``; None for the reference AppServer (the built-in adapter:
    its own account API and ``POST /v1/tokens``)."""
    if not spec or spec == "builtin":
        return None
    adapter = load_adapter(spec)
    if adapter.request is None or adapter.clients is None:
        raise ValueError(
            f"{spec}: Locust users need an adapter with [request], [response] and [clients]"
            " (an 'ask' callable is asyncio code, which cannot run under gevent)"
        )
    return adapter


def runtime_of(environment: Any) -> Runtime:
    rt = getattr(environment, _ATTR, None)
    if rt is None:
        raise RuntimeError("scenarios.load.plugin is not loaded in this locustfile")
    return rt  # type: ignore[no-any-return]


class Runtime:
    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.is_master = isinstance(environment.runner, MasterRunner)
        self.runs_users = not self.is_master
        self.collects = not isinstance(environment.runner, WorkerRunner)
        self.limits = GeneratorLimits()
        self.monitor = GeneratorMonitor(self.limits, on_overload=self._overloaded)
        self._api: AppServerApi | None = None
        self._adapter_api: AdapterApi | None = None
        # Read now to fail before any user (the master, a local run); a worker of another
        # machine learns --adapter with the master's first spawn message (:attr:`adapter`).
        self._adapter: tuple[str, Adapter | None] | None = None
        if environment.parsed_options is not None:
            _ = self.adapter
        self._numbers = itertools.count()
        self.users: weakref.WeakSet[Any] = weakref.WeakSet()
        self._registered = 0
        self.unexpected_losses = 0
        self.last_connect: float | None = None
        # storm round this process is armed for
        self.storm_round = 0
        self.storm_active = False
        self.storm_lost = 0
        self.storm_back = 0
        self.storm_first_loss: float | None = None
        self.storm_last_back: float | None = None
        self.storm_token_asks = 0
        self.storm_connect_failures = 0
        self.fleet_gate = Event()
        self._reporter: gevent.Greenlet | None = None
        self._last_socket_count: int | None = None
        self.missing_workers: set[str] = set()
        self._watcher: gevent.Greenlet | None = None
        # master side
        self.reports: dict[str, WorkerReport] = {}
        self.figures: dict[str, Any] = {}
        setattr(environment, _ATTR, self)

    # ------------------------------------------------------------------ options
    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    @property
    def broker(self) -> tuple[str, int]:
        parts = urlsplit(str(self.options.broker))
        return parts.hostname or "127.0.0.1", parts.port or 1883

    @property
    def api(self) -> AppServerApi:
        """The AppServer pool of this process (made on first use: the host is known
        on a worker only once the master's first spawn message came)."""
        if self._api is None:
            self._api = AppServerApi(
                self.environment.host or "http://127.0.0.1:18081",
                pool=int(self.options.http_pool),
                timeout=float(self.options.mqtt_timeout),
            )
        return self._api

    @property
    def adapter(self) -> Adapter | None:
        """``--adapter FILE`` (read once per value), None for the reference AppServer."""
        spec = str(getattr(self.options, "adapter", "") or "")
        if self._adapter is None or self._adapter[0] != spec:
            self._adapter = (spec, _adapter_of(spec))
        return self._adapter[1]

    @property
    def adapter_api(self) -> AdapterApi:
        """The AppServer of ``--adapter FILE``, asked as the file says (one pool)."""
        assert self.adapter is not None
        if self._adapter_api is None:
            self._adapter_api = AdapterApi(
                self.environment.host or "http://127.0.0.1:18081",
                self.adapter,
                pool=int(self.options.http_pool),
                timeout=float(self.options.mqtt_timeout),
            )
        return self._adapter_api

    def next_identity(self) -> ClientIdentity:
        """The next of the adapter's ``[clients]`` for a user of this process: worker
        ``i`` takes numbers ``first + i * block`` onwards (``--adapter-block``; by default
        the adapter's ``count`` shared among ``--processes``), so no two users of a
        distributed run are one client.  ``ValueError`` past the block or the count."""
        assert self.adapter is not None and self.adapter.clients is not None
        clients = self.adapter.clients
        workers = int(getattr(self.options, "processes", 0) or 0)
        if workers < 0:
            workers = os.cpu_count() or 1
        block = int(self.options.adapter_block) or max(1, clients.count // max(1, workers))
        index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        k = next(self._numbers)
        n = clients.first + index * block + k
        if k >= block or n >= clients.first + clients.count:
            raise ValueError(
                f"no client left for this user: worker {index} has numbers"
                f" {clients.first + index * block}.. ({block} per worker, --adapter-block) of"
                f" the adapter's {clients.first}..{clients.first + clients.count - 1}"
            )
        return clients.identity(n)

    # ------------------------------------------------------------------ timing
    @contextmanager
    def timed(self, request_type: str, name: str, response_length: int = 0) -> Iterator[Any]:
        """``events.request.measure()``; a failure the generator caused is reported as
        ``generator:overloaded`` (its error names the request), never as ``name``.
        After the block, ``meta["exception"]`` is None on success."""
        started = time.monotonic()
        with self.environment.events.request.measure(request_type, name, response_length) as meta:
            try:
                yield meta
            except Exception as exc:
                overloaded = self.monitor.overloaded_since(started)
                if blame(exc, overloaded=overloaded) is Blame.GENERATOR:
                    resource = exhausted_resource(exc)
                    if resource is not None:
                        self.monitor.note(resource)
                    meta["request_type"] = "GENERATOR"
                    meta["name"] = GENERATOR_OVERLOADED
                    why = resource or "+".join(self.monitor.reasons)
                    raise GeneratorLimit(f"{name}: {type(exc).__name__} ({why})") from exc
                raise

    def _overloaded(self, verdict: Verdict) -> None:
        self.environment.events.request.fire(
            request_type="GENERATOR",
            name=GENERATOR_OVERLOADED,
            response_time=0,
            response_length=0,
            exception=GeneratorLimit("+".join(verdict.reasons)),
            context={},
        )

    # ------------------------------------------------------------------ device events
    def register(self, user: Device) -> None:
        self.users.add(user)
        self._registered += 1
        if self._registered % 500 == 0:
            # Thousands of sessions make every full collection longer (0.24 s for
            # 10,000, measured; seconds on a starved CPU): keep them out of its way
            # while spawning too, not only once spawned (on_spawning_complete).
            gc.freeze()

    def unregister(self, user: Device) -> None:
        self.users.discard(user)

    def session_lost(self, user: Any, reason: str) -> None:
        """A session ended that the user did not close."""
        if self.storm_active:
            if getattr(user, "storm_round_lost", 0) != self.storm_round:
                user.storm_round_lost = self.storm_round
                self.storm_lost += 1
                if self.storm_first_loss is None:
                    self.storm_first_loss = time.time()
            return
        # A broker drops a session whose keep-alive it missed for 1.5 keep-alives
        # (MQTT-3.1.2-24): if the generator was overloaded in that time, the silence
        # may well have been ours.
        keepalive = float(self.options.mqtt_keepalive)
        error: Exception = ConnectionError(reason)
        request_type, name = "MQTT", "connection:lost"
        since = time.monotonic() - 1.5 * keepalive
        if blame(error, overloaded=self.monitor.overloaded_since(since)) is Blame.GENERATOR:
            request_type, name = "GENERATOR", GENERATOR_OVERLOADED
            error = GeneratorLimit(f"connection:lost: {reason} ({'+'.join(self.monitor.reasons)})")
        else:
            self.unexpected_losses += 1
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=0,
            response_length=0,
            exception=error,
            context={},
        )

    def session_back(self, user: Any) -> None:
        """A session is up (CONNACK accepted)."""
        self.last_connect = time.time()
        r = self.storm_round
        if (
            r
            and getattr(user, "storm_round_lost", 0) == r
            and getattr(user, "storm_round_back", 0) != r
        ):
            user.storm_round_back = r
            self.storm_back += 1
            self.storm_last_back = time.time()

    def token_asked(self) -> None:
        if self.storm_active:
            self.storm_token_asks += 1

    def connect_failed(self) -> None:
        if self.storm_active:
            self.storm_connect_failures += 1

    # ------------------------------------------------------------------ messages
    def install_messages(self) -> None:
        runner = self.environment.runner
        if self.runs_users:
            runner.register_message(STORM_ARM_MESSAGE, self._on_storm_arm)
            runner.register_message(STORM_DROP_MESSAGE, self._on_storm_drop)
            runner.register_message(FLEET_CONNECT_MESSAGE, self._on_fleet_connect)
        if self.collects:
            runner.register_message(REPORT_MESSAGE, self._on_report)

    def _on_storm_arm(self, environment: Any, msg: Any, **_kw: Any) -> None:
        data = msg.data or {}
        round_no = int(data.get("round", 0))
        self.storm_active = bool(data.get("active", True))
        if not self.storm_active:
            self.send_report()
            return
        self.storm_round = round_no
        self.storm_lost = self.storm_back = 0
        self.storm_first_loss = self.storm_last_back = None
        self.storm_token_asks = self.storm_connect_failures = 0
        self.send_report()  # the master waits for every worker's acknowledgement

    def _on_storm_drop(self, environment: Any, msg: Any, **_kw: Any) -> None:
        # Every session of this process cut in one pass: a network loss.
        for user in list(self.users):
            user.drop()

    def _on_fleet_connect(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.fleet_gate.set()

    def _on_report(self, environment: Any, msg: Any, **_kw: Any) -> None:
        report = WorkerReport.from_message(msg.data or {})
        self.reports[report.worker or str(msg.node_id)] = report

    # ------------------------------------------------------------------ reporting
    def report(self, *, sockets: bool = False) -> WorkerReport:
        users = list(self.users)
        runner = self.environment.runner
        # psutil reads the machine's whole TCP table (/proc/net/tcp): with tens of
        # thousands of connections on the machine that blocked every worker's event
        # loop for seconds (heartbeats missed). Only in the last report.
        if sockets:
            self._last_socket_count = self._broker_sockets()
        _, _, fds, limit = read_sample_counters()
        return WorkerReport(
            worker=str(getattr(runner, "client_id", "local")),
            pid=os.getpid(),
            sent_at=time.time(),
            users=len(users),
            prepared=sum(1 for u in users if u.prepared),
            connected=sum(1 for u in users if u.connected),
            last_connect=self.last_connect,
            fds=fds,
            fd_limit=limit,
            mqtt_sockets=self._last_socket_count,
            fds_at_start=self.monitor.fds_at_start,
            rss_kb=rss_kb(),
            rss_kb_at_start=self.monitor.rss_kb_at_start,
            cpu_s=self.monitor.cpu_seconds(),
            wall_s=self.monitor.wall_seconds(),
            peak_cpu_share=self.monitor.peak_cpu_share,
            peak_wait_share=self.monitor.peak_wait_share,
            peak_lag_s=self.monitor.peak_lag_s,
            peak_gc_pause_s=self.monitor.peak_gc_pause_s,
            overloaded=self.monitor.ever_overloaded,
            overload_reasons=tuple(self.monitor.reasons),
            unexpected_losses=self.unexpected_losses,
            storm_round=self.storm_round,
            storm_lost=self.storm_lost,
            storm_back=self.storm_back,
            storm_first_loss=self.storm_first_loss,
            storm_last_back=self.storm_last_back,
            storm_token_asks=self.storm_token_asks,
            storm_connect_failures=self.storm_connect_failures,
        )

    def _broker_sockets(self) -> int | None:
        """TCP sockets this process holds towards the broker (independent of the
        users' own bookkeeping: a leaked socket per reconnect shows here)."""
        try:
            import psutil

            port = self.broker[1]
            conns = psutil.Process().net_connections(kind="tcp")
        except Exception:  # psutil missing or /proc unreadable: not measured
            return None
        return sum(1 for c in conns if c.raddr and c.raddr.port == port)

    def send_report(self, *, sockets: bool = False) -> None:
        self.environment.runner.send_message(
            REPORT_MESSAGE, self.report(sockets=sockets).to_message()
        )

    def start_reporting(self) -> None:
        if self._reporter is None or self._reporter.dead:
            self._reporter = gevent.spawn(self._report_loop)

    def _report_loop(self) -> None:
        while True:
            gevent.sleep(0.5 if self.storm_active else 1.0)
            try:
                self.send_report()
            except Exception:  # never let reporting kill the worker
                log.exception("worker report failed")

    def _watch_workers(self) -> None:
        """Master: a worker that misses its heartbeats had its event loop blocked for
        seconds -- an overloaded generator (Locust itself only logs it, and stops the
        test with exit status 0 when the last one goes missing)."""
        runner = self.environment.runner
        while True:
            gevent.sleep(1.0)
            for client in list(runner.clients.missing):
                if client.id not in self.missing_workers:
                    self.missing_workers.add(client.id)
                    log.error(
                        "worker %s missed its heartbeats: its event loop was blocked "
                        "(overloaded generator); its users' figures are suspect",
                        client.id,
                    )

    def on_test_start(self) -> None:
        if self.runs_users:
            # Options may have come with the master's spawn message: read them now.
            opts = self.options
            self.limits = GeneratorLimits(
                max_cpu_share=float(opts.generator_max_cpu),
                max_hub_lag_s=float(opts.generator_max_lag),
            )
            self.monitor.limits = self.limits
            self.monitor.start()
            self.unexpected_losses = 0
            self.storm_round = 0
            self.storm_active = False
            self.start_reporting()
        if self.collects:
            # (figures are the shapes': they may already have begun, in this process)
            self.reports.clear()
        if self.is_master and (self._watcher is None or self._watcher.dead):
            self.missing_workers.clear()
            self._watcher = gevent.spawn(self._watch_workers)

    def on_spawning_complete(self) -> None:
        """Every user is in: move the long-lived objects (sessions, paho clients, users)
        out of the cyclic collector's way.  A gen-2 pass over a worker of thousands of
        users stops its event loop for 0.3 s and more (measured), which every timing
        taken meanwhile would carry; what the users allocate from now on is still
        collected.  The reconnect-storm scenario does the same in its clients' process."""
        if self.runs_users:
            gc.freeze()  # O(1); no collection first: that would be the pause avoided

    def on_test_stopping(self) -> None:
        """The last report, while the users still hold their sessions; no more after."""
        if self.runs_users:
            if self._reporter is not None:
                self._reporter.kill(block=False)
                self._reporter = None
            self.send_report(sockets=True)
            self.monitor.stop()

    # ------------------------------------------------------------------ the end
    def on_quitting(self) -> None:
        if not self.collects:
            return
        t = totals(self.reports.values())
        doc = {
            "generator": t.to_dict(),
            "workers": {k: r.to_message() for k, r in sorted(self.reports.items())},
            **self.figures,
        }
        stats = self.environment.runner.stats
        entry = stats.entries.get((GENERATOR_OVERLOADED, "GENERATOR"))
        blamed = entry.num_failures if entry is not None else 0
        doc["generator"]["blamed_failures"] = blamed
        doc["generator"]["missing_workers"] = sorted(self.missing_workers)
        ran = self.environment.runner.stats.total.num_requests > 0 or bool(self.reports)
        if self.is_master and not ran:
            self.missing_workers.add("(no worker reported)")
        overloaded = bool(t.overloaded_workers) or blamed > 0 or bool(self.missing_workers)
        doc["generator"]["was_the_limit"] = overloaded
        log.info(
            "load generator: %d worker(s), %d users, %s descriptors per user, "
            "%s CPU per user, peak CPU %.2f of a core, peak hub lag %.2f s",
            t.workers,
            t.users,
            "-" if t.fds_per_user is None else f"{t.fds_per_user:.2f}",
            "-" if t.cpu_per_user is None else f"{t.cpu_per_user:.4f}",
            t.peak_cpu_share,
            t.peak_lag_s,
        )
        if t.peak_lag_s >= 0.25 and not overloaded:
            log.warning(
                "load generator: its event loop woke up to %.2f s late (CPU starved or "
                "a collector pause): timings taken then carry that much of the generator",
                t.peak_lag_s,
            )
        if overloaded:
            log.error(
                "THE LOAD GENERATOR WAS THE LIMIT (%s; %d failures attributed to it): "
                "these figures measure the generator, not the stack. Add workers "
                "(--processes N) or machines. Exit status %d.",
                ", ".join(
                    [*t.overload_reasons, *(["workers missing"] if self.missing_workers else [])]
                )
                or "errors of its own",
                blamed,
                EXIT_GENERATOR_LIMIT,
            )
            self.environment.process_exit_code = EXIT_GENERATOR_LIMIT
        path = getattr(self.options, "load_report", "") or ""
        if path:
            try:
                Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            except OSError as exc:  # e.g. out of descriptors: the verdict stands
                log.error("cannot write the load report %s: %s", path, exc)
