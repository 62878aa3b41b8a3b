"""Load shapes of mqtt-token-sim: a fleet of idle devices and a reconnect storm.

Both run on the master of a distributed run (or in the single local process) and drive
:class:`~.users.DeviceUser` s on every worker through Locust's own messages; the
figures come from the workers' reports (:mod:`.figures`) and the servers'
``/admin/metrics``, go to the log, to Locust's stats (request types ``FLEET`` and
``STORM``) and to the JSON load report (``--load-report``).  ``-u`` is the number of
devices, ``-r`` the spawn rate (``use_common_options``).

* :class:`FleetShape` -- N idle devices (SPEC §6: keep-alive, refresh on the expire
  notice): every device gets its token first and waits; the master weighs the stack's
  process, lets them all connect at once, weighs it again (the broker's memory per
  connection, when the stack runs on this machine), then holds them ``--fleet-hold``
  seconds and counts every session lost meanwhile.
* :class:`StormShape` -- N connected devices lose the broker at once and come back
  (SPEC §7, reconnect storm), ``--storm-rounds`` times: the broker kicks everyone
  (``--storm-kick-url``, e.g. the control API of ``python -m scenarios.stack_proc``)
  or, without a lever, every device cuts its own connection at the same instant.
  Figures per round: seconds until the last device is back (kick -> last CONNACK),
  token traffic (the devices' own ``token:apply`` count and the AppServer's token
  requests) and upstream applies (the AuthServer's, ``--authserver``) during the
  storm.  With valid tokens the target is 0 token traffic: any is a failure
  ``storm:token-traffic``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust import LoadTestShape
from locust.runners import MasterRunner

from scenarios.env import APPLY_METRIC, token_requests_of
from sim.shared.procstats import rss_kb
from sim.shared.promtext import parse_metrics

from .appserver import get_text, post
from .figures import WorkerReport, storm_complete, storm_round, totals
from .runtime import FLEET_CONNECT_MESSAGE, STORM_ARM_MESSAGE, STORM_DROP_MESSAGE, runtime_of

__all__ = ["FleetShape", "StormShape"]

log = logging.getLogger("mqtt_token_sim.load")


def _wait_for(check: Callable[[], bool], deadline_s: float, poll_s: float = 0.1) -> bool:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            return False
        gevent.sleep(poll_s)
    return True


class _DrivenShape(LoadTestShape):
    """A shape whose plan runs in a greenlet of the master; ticks until it is done."""

    abstract = True
    use_common_options = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._driver: gevent.Greenlet | None = None

    def reset_time(self) -> None:
        super().reset_time()  # type: ignore[no-untyped-call]
        if self._driver is not None:
            self._driver.kill(block=False)
        self._driver = None

    def tick(self) -> tuple[int, float] | None:
        if self._driver is None:
            self._driver = gevent.spawn(self._drive_safely)
        if self._driver.dead:
            return None
        opts = self.env.parsed_options
        return int(opts.num_users or 1), float(opts.spawn_rate or 1)

    # ------------------------------------------------------------------ helpers
    @property
    def env(self) -> Any:
        return self.run.environment

    @property
    def run(self) -> Any:
        """The runner (Locust sets it before the first tick)."""
        assert self.runner is not None
        return self.runner

    def _drive_safely(self) -> None:
        try:
            self.drive()
        except Exception:
            log.exception("%s failed", type(self).__name__)
            self.env.process_exit_code = 2

    def drive(self) -> None:
        raise NotImplementedError

    def _reports(self) -> list[WorkerReport]:
        rt = runtime_of(self.env)
        runner = self.run
        if isinstance(runner, MasterRunner):
            ids = {c.id for c in runner.clients.all}
            return [r for k, r in rt.reports.items() if k in ids]
        return list(rt.reports.values())

    def _workers(self) -> int:
        runner = self.run
        return int(runner.worker_count) if isinstance(runner, MasterRunner) else 1

    def _fire(self, kind: str, name: str, seconds: float | None, error: str | None) -> None:
        self.env.events.request.fire(
            request_type=kind,
            name=name,
            response_time=0 if seconds is None else seconds * 1000.0,
            response_length=0,
            exception=None if error is None else AssertionError(error),
            context={},
        )

    def _until_all(self, what: str, check: Callable[[], bool], deadline_s: float) -> bool:
        if _wait_for(check, deadline_s):
            return True
        t = totals(self._reports())
        log.error(
            "%s: not %s within %.0f s (users %d, prepared %d, connected %d)",
            type(self).__name__,
            what,
            deadline_s,
            t.users,
            t.prepared,
            t.connected,
        )
        return False

    def _metric(self, url: str, read: Callable[[Any], float]) -> int | None:
        if not url:
            return None
        try:
            return int(read(parse_metrics(get_text(url.rstrip("/") + "/admin/metrics"))))
        except Exception as exc:  # a figure not measured is said so, not guessed
            log.warning("metrics of %s not readable: %s", url, exc)
            return None

    def token_requests(self) -> int | None:
        if getattr(self.env.parsed_options, "adapter", "") not in ("", "builtin"):
            log.info("AppServer token requests: not measured (--adapter: not our AppServer)")
            return None
        return self._metric(self.env.host or "", token_requests_of)

    def applies(self) -> int | None:
        url = str(getattr(self.env.parsed_options, "authserver", "") or "")
        return self._metric(url, lambda m: m.total(APPLY_METRIC, operation="apply"))


class StormShape(_DrivenShape):
    """N devices connect, then lose the broker at once and come back, per round."""

    def drive(self) -> None:
        opts = self.env.parsed_options
        rt = runtime_of(self.env)
        n = int(opts.num_users)
        if not self._until_all(
            "every device connected",
            lambda: totals(self._reports()).connected >= n,
            float(opts.setup_timeout),
        ):
            self._fire("STORM", "storm:all-back", None, "the fleet never connected")
            return
        lever = "kick" if opts.storm_kick_url else "drop"
        rounds: list[dict[str, Any]] = []
        rt.figures["storm"] = rounds
        for round_no in range(1, int(opts.storm_rounds) + 1):
            gevent.sleep(float(opts.storm_settle))
            requests_before, applies_before = self.token_requests(), self.applies()
            self.run.send_message(STORM_ARM_MESSAGE, {"round": round_no, "active": True})

            def armed_everywhere(r: int = round_no) -> bool:
                on_round = sum(1 for x in self._reports() if x.storm_round == r)
                return on_round >= self._workers()

            def all_back(r: int = round_no) -> bool:
                return storm_complete(self._reports(), r, n)

            armed = _wait_for(armed_everywhere, 10.0)
            if not armed:
                log.error("storm round %d: not every worker armed within 10 s", round_no)
            kicked_at = time.time()
            if lever == "kick":
                post(str(opts.storm_kick_url))
            else:
                self.run.send_message(STORM_DROP_MESSAGE, {"round": round_no})
            _wait_for(all_back, float(opts.storm_deadline))
            requests_after, applies_after = self.token_requests(), self.applies()
            self.run.send_message(STORM_ARM_MESSAGE, {"round": round_no, "active": False})
            fig = storm_round(
                self._reports(),
                round_no=round_no,
                clients=n,
                lever=lever,
                kicked_at=kicked_at,
                appserver_token_requests=_delta(requests_before, requests_after),
                upstream_applies=_delta(applies_before, applies_after),
            )
            rounds.append(fig.to_dict())
            log.info(
                "storm round %d (%s, %d devices): %s; lost %d, back %d; token traffic: "
                "devices %d, AppServer %s, upstream applies %s; connect failures %d",
                round_no,
                lever,
                n,
                f"all back after {fig.seconds_back:.2f} s"
                if fig.seconds_back is not None
                else "NOT all back",
                fig.lost,
                fig.back,
                fig.device_token_asks,
                _fmt(fig.appserver_token_requests),
                _fmt(fig.upstream_applies),
                fig.connect_failures,
            )
            self._fire(
                "STORM",
                "storm:all-back",
                fig.seconds_back,
                None
                if fig.complete
                else f"{fig.back} of {n} back within {float(opts.storm_deadline):.0f} s",
            )
            if fig.token_traffic:
                self._fire(
                    "STORM",
                    "storm:token-traffic",
                    None,
                    "token requests during a storm while every token was valid",
                )


class FleetShape(_DrivenShape):
    """N idle devices: tokens first, then all connect; memory per connection; hold."""

    def drive(self) -> None:
        opts = self.env.parsed_options
        rt = runtime_of(self.env)
        n = int(opts.num_users)
        fig: dict[str, Any] = {"clients": n}
        rt.figures["fleet"] = fig
        if not self._until_all(
            "every device holding a token",
            lambda: totals(self._reports()).prepared >= n,
            float(opts.setup_timeout),
        ):
            self._fire("FLEET", "fleet:all-connected", None, "tokens were not all issued")
            return
        pid = _stack_pid(int(opts.stack_pid or 0), self._broker_port())
        fig["stack_pid"] = pid
        rss_before = _rss_kb(pid)
        fig["stack_rss_before_kb"] = rss_before
        started = time.time()
        self.run.send_message(FLEET_CONNECT_MESSAGE, {})
        all_in = self._until_all(
            "every device connected",
            lambda: totals(self._reports()).connected >= n,
            float(opts.setup_timeout),
        )
        lasts = [r.last_connect for r in self._reports() if r.last_connect is not None]
        seconds = max(lasts) - started if all_in and lasts else None
        fig["seconds_to_all_connected"] = seconds
        fig["connected"] = totals(self._reports()).connected
        rss_after = _rss_kb(pid)
        fig["stack_rss_connected_kb"] = rss_after
        if rss_before is not None and rss_after is not None:
            fig["broker_kb_per_connection"] = round((rss_after - rss_before) / n, 2)
        self._fire(
            "FLEET",
            "fleet:all-connected",
            seconds,
            None if all_in else f"{fig['connected']} of {n} connected",
        )
        losses_before = totals(self._reports()).unexpected_losses
        gevent.sleep(float(opts.fleet_hold))
        t = totals(self._reports())
        fig["held_s"] = float(opts.fleet_hold)
        fig["connected_after_hold"] = t.connected
        fig["lost_during_hold"] = t.unexpected_losses - losses_before
        fig["stack_rss_after_hold_kb"] = _rss_kb(pid)
        log.info(
            "fleet of %d: all connected after %s s, %d connected after holding %.0f s "
            "(%d sessions lost meanwhile); stack process %s: %s KB per connection",
            n,
            _fmt(seconds),
            t.connected,
            float(opts.fleet_hold),
            fig["lost_during_hold"],
            pid if pid else "not found",
            _fmt(fig.get("broker_kb_per_connection")),
        )

    def _broker_port(self) -> int:
        return runtime_of(self.env).broker[1]


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


def _fmt(v: Any) -> str:
    if v is None:
        return "not measured"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _stack_pid(given: int, broker_port: int) -> int | None:
    """The process listening on the broker's port (this machine), unless given."""
    if given:
        return given
    try:
        import psutil

        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == broker_port:
                return int(c.pid) if c.pid else None
    except Exception as exc:
        log.warning("cannot find the broker's process: %s", exc)
    return None


def _rss_kb(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        return rss_kb(pid)
    except OSError:
        return None
