"""``mqtt-token-sim run SCENARIO``: run a scenario, show progress, report its figures.

Exit status (:mod:`sim.shared.exits`): 0 when every expectation passed, 1 when one
failed, 2 when the scenario could not run (a bad argument, an unknown or bad ``--set``
option, a report path or data dir it cannot write -- all checked before anything
starts --, the stack did not start, an endpoint was unreachable or refused what the
scenario needs, a crash), 130 when interrupted (Ctrl-C: the scenario stops, its
environment is torn down, and the report, marked ``interrupted``, is written).  The
JSON report is written in every case but a bad argument; the reason a run could not
go on is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import textwrap
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from sim.harness.preflight import check_output_file, check_writable_dir
from sim.shared.exits import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CannotRun

from .base import DEFECTS, DESCRIPTIONS, SCENARIOS, ScenarioParams, check_defect, run_scenario
from .env import AppServerTarget, Endpoints
from .options import check_options
from .progress import NullProgress, Progress
from .report import render_html, render_summary

__all__ = ["add_arguments", "run"]

EXIT_PASSED, EXIT_ERROR = EXIT_OK, EXIT_CANNOT_RUN
T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "scenarios:\n"
        + "\n".join(f"  {name:<16} {DESCRIPTIONS[name]}" for name in sorted(SCENARIOS))
        + "\n\ndefects (--set defect=NAME: a switch on the harness's own parts that puts"
        + " into the\nsystem the fault a scenario exists to catch; the run must then fail):\n"
        + "\n".join(
            textwrap.fill(
                f"{name:<16} {defect}: {what}",
                width=88,
                initial_indent="  ",
                subsequent_indent=" " * 19,
            )
            for name in sorted(DEFECTS)
            for defect, what in DEFECTS[name].items()
        )
        + "\n\nexit status: 0 passed, 1 an expectation failed, 2 could not run,"
        + " 130 interrupted (the report is written, marked interrupted)"
        + "\nschema of --report and every option of --set: docs/scenarios.md"
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS), help="which scenario to run")
    parser.add_argument(
        "--clients", type=int, default=None, help="number of clients (default: per scenario)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--report", type=Path, metavar="OUT.json", help="write the JSON report")
    parser.add_argument("--html", type=Path, metavar="OUT.html", help="write the HTML report")
    parser.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scenario option (see docs/scenarios.md), repeatable",
    )
    parser.add_argument(
        "--sample-ms", type=int, default=200, help="timeline sampling interval (real ms)"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="run a manual-clock scenario (expiry-refresh, outage-recovery) on a "
        "scaled clock this fast instead: real scheduling delays then count S times "
        "(docs/scenarios.md)",
    )
    parser.add_argument("--data-dir", help="data dir of the embedded stack (default: a temp dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    ext = parser.add_argument_group(
        "external endpoints",
        "give all three to run against a stack that is already up; with --adapter, "
        "--appserver alone drives YOUR AppServer beside an AuthServer and broker the run "
        "starts (the AuthServer on port 18080, --set authserver_port=N)",
    )
    ext.add_argument(
        "--adapter",
        metavar="FILE",
        help="how to ask your AppServer for a token (docs/your-appserver.md); for "
        "reconnect-storm, cache-reuse and outage-recovery",
    )
    ext.add_argument("--authserver", metavar="URL", help="AuthServer base URL (admin API on it)")
    ext.add_argument("--appserver", metavar="URL", help="AppServer base URL")
    ext.add_argument("--broker", metavar="URL", help="broker URL, mqtt://host:port")


def _parse_options(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set wants NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def _checked(
    args: argparse.Namespace,
) -> tuple[dict[str, str], Endpoints | None, AppServerTarget | None]:
    """Everything that can be checked before a run starts; :class:`CannotRun` says what
    is wrong (module docstring)."""
    try:
        options = _parse_options(args.options)
        try:
            check_options(args.scenario, options)
            check_defect(args.scenario, options, adapter=args.adapter is not None)
        except ValueError as exc:
            raise ValueError(f"--set {exc}") from None
        target = _target(args, options)
        endpoints = _endpoints(args, adapter=target is not None)
        if args.sample_ms <= 0:
            raise ValueError("--sample-ms must be > 0")
        if args.clients is not None and args.clients < 1:
            raise ValueError("--clients must be at least 1")
        if args.time_scale is not None and not args.time_scale > 0:
            raise ValueError("--time-scale must be > 0")
    except ValueError as exc:
        raise CannotRun(str(exc)) from None
    for flag, path in (("--report", args.report), ("--html", args.html)):
        if path is not None:
            check_output_file(path, flag)
    if args.data_dir is not None:
        if endpoints is not None:
            raise CannotRun("--data-dir is the embedded stack's: not with external endpoints")
        check_writable_dir(args.data_dir, "--data-dir")
    return options, endpoints, target


async def _until_interrupted(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; the first Ctrl-C (or SIGTERM) cancels it -- a scenario then tears
    its environment down and returns its report, marked interrupted -- and a second one
    interrupts that too (the handlers are gone by then)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    signals = (signal.SIGINT, signal.SIGTERM)

    def interrupt() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)
        task.cancel()

    for sig in signals:
        loop.add_signal_handler(sig, interrupt)
    try:
        return await task
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    options, endpoints, target = _checked(args)
    params = ScenarioParams(
        clients=args.clients,
        seed=args.seed,
        options=options,
        sample_interval_s=args.sample_ms / 1000.0,
        data_dir=args.data_dir,
        time_scale=args.time_scale,
    )
    _quiet_libraries()
    progress = NullProgress() if args.quiet else Progress(sys.stderr)
    report = asyncio.run(
        _until_interrupted(
            run_scenario(
                args.scenario, params, endpoints=endpoints, progress=progress, target=target
            )
        )
    )
    sys.stdout.write(render_summary(report))
    written = []
    if args.report:
        args.report.write_text(report.to_json() + "\n", encoding="utf-8")
        written.append(str(args.report))
    if args.html:
        args.html.write_text(render_html(report), encoding="utf-8")
        written.append(str(args.html))
    where = f"; report written to {' and '.join(written)}" if written else ""
    if report.interrupted:
        print(f"mqtt-token-sim run: {args.scenario} interrupted{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report.error is not None:
        print(
            f"mqtt-token-sim run: {args.scenario} could not run: {report.error}{where}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_PASSED if report.passed else EXIT_FAILED


def _quiet_libraries() -> None:
    """amqtt (and its state machines) and gmqtt narrate every connection at INFO: with
    thousands of clients that drowns the progress bar.  Keep them at WARNING unless the
    user asked for DEBUG."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # gmqtt warns about every socket the broker closed (a kick, an expiry): expected here.
    logging.getLogger("gmqtt").setLevel(logging.ERROR)
    # gmqtt logs every refused CONNACK at ERROR; the SDK handles (and counts) them.
    logging.getLogger("sim.customer.client.gmqtt").setLevel(logging.CRITICAL)
    # Scenarios inject AuthServer faults on purpose: the AppServer's warnings about them
    # are the expected story, told by the figures.
    logging.getLogger("sim.customer.appserver.service").setLevel(logging.ERROR)


def _target(args: argparse.Namespace, options: dict[str, str]) -> AppServerTarget | None:
    """``--adapter FILE --appserver URL``: the user's AppServer (docs/scenarios.md)."""
    if args.adapter is None:
        return None
    from sim.customer.adapter import AdapterError, load_adapter

    if not args.appserver:
        raise ValueError("--adapter needs --appserver URL (your AppServer)")
    try:
        adapter = load_adapter(args.adapter)
    except AdapterError as exc:
        raise ValueError(str(exc)) from None
    first = options.get("first_client")
    try:
        return AppServerTarget(
            args.appserver.rstrip("/"),
            adapter,
            restart_cmd=options.get("appserver_restart_cmd") or None,
            first_client=None if first is None else int(first),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--adapter: {exc}") from None


def _endpoints(args: argparse.Namespace, *, adapter: bool = False) -> Endpoints | None:
    given = [args.authserver, args.appserver, args.broker]
    if not any(given) or (adapter and not args.authserver and not args.broker):
        if adapter and not args.appserver.startswith(("http://", "https://")):
            raise ValueError(f"--appserver must be a http/https URL, got {args.appserver!r}")
        return None
    if not all(given):
        raise ValueError("external endpoints need all of --authserver, --appserver and --broker")
    for flag, url, schemes in (
        ("--authserver", args.authserver, ("http", "https")),
        ("--appserver", args.appserver, ("http", "https")),
        ("--broker", args.broker, ("mqtt", "tcp")),
    ):
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in schemes:
            raise ValueError(f"{flag} must be a {'/'.join(schemes)} URL, got {url!r}")
    return Endpoints(args.authserver.rstrip("/"), args.appserver.rstrip("/"), args.broker)
