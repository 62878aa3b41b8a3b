"""``mqtt-token-sim check appserver``: the seed's AppServer rules as named checks against
any AppServer (docs/your-appserver.md).

Exit 0: every check passed (or was not measured, with the reason); 1: a check failed;
2: the run could not start or a check could not run (an unreachable URL, a bad adapter:
one line on stderr).  ``--json``, ``--html`` and ``--junit`` write the report as files
too (JUnit XML: one test case per check, for a CI server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .rules import CHECK_NAMES

    parser.add_argument("target", choices=["appserver"], help="what to check")
    parser.add_argument(
        "--adapter",
        default="builtin",
        metavar="FILE",
        help="how to ask the AppServer for tokens, and its clients (default: builtin,"
        " the reference AppServer)",
    )
    parser.add_argument("--appserver", default="http://127.0.0.1:18081", metavar="URL")
    parser.add_argument(
        "--authserver",
        default="http://127.0.0.1:18080",
        metavar="URL",
        help="the mock AuthServer the AppServer applies to (its admin API is read)",
    )
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    parser.add_argument(
        "--restart-cmd",
        metavar="CMD",
        help="shell command that restarts the AppServer (restart-keeps-cache)",
    )
    parser.add_argument(
        "--advance-cmd",
        metavar="CMD",
        help="shell command that moves the AppServer's clock {seconds} forward"
        " (outage-stale-fallback; not needed on a shared manual clock)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write the report as HTML")
    parser.add_argument(
        "--junit", type=Path, metavar="FILE", help="write the report as JUnit XML (for CI)"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        default="",
        help=f"comma-separated checks to run (default all: {', '.join(CHECK_NAMES)})",
    )
    parser.add_argument(
        "--first-client", type=int, metavar="N", help="first [clients] number to use"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="identical asks at once")
    parser.add_argument("--backlog", type=int, default=20, help="clients queued by the outage")
    parser.add_argument(
        "--min-life", type=float, default=60.0, metavar="S", help="least life of a served token"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="real seconds per ask"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=180.0, metavar="S", help="real seconds to drain"
    )
    parser.add_argument(
        "--restart-timeout", type=float, default=60.0, metavar="S", help="real seconds to restart"
    )


def run(args: argparse.Namespace) -> int:
    from sim.customer.adapter import AdapterError, load_adapter

    from .appserver import CannotRun, CheckOptions, check_appserver
    from .model import Status
    from .report import to_html, to_json, to_junit, to_table

    def fail(message: str) -> int:
        print(f"mqtt-token-sim check: {message}", file=sys.stderr)
        return 2

    try:
        adapter = load_adapter(args.adapter)
        options = CheckOptions(
            appserver_url=args.appserver,
            authserver_url=args.authserver,
            broker_url=args.broker,
            restart_cmd=args.restart_cmd,
            advance_cmd=args.advance_cmd,
            only=tuple(n.strip() for n in args.only.split(",") if n.strip()),
            first_client=args.first_client,
            concurrency=args.concurrency,
            backlog=args.backlog,
            min_life_s=args.min_life,
            ask_timeout_s=args.timeout,
            drain_timeout_s=args.drain_timeout,
            restart_timeout_s=args.restart_timeout,
        )
    except (AdapterError, ValueError) as exc:
        return fail(str(exc))

    def progress(result: object) -> None:
        from .model import CheckResult

        assert isinstance(result, CheckResult)
        mark = "ok" if result.status is Status.PASSED else result.status.value.upper()
        print(f"  {result.spec.name}: {mark} ({result.seconds:.1f} s)", file=sys.stderr)

    try:
        report = asyncio.run(check_appserver(adapter, options, progress=progress))
    except CannotRun as exc:
        return fail(str(exc))
    sys.stdout.write(to_table(report))
    for path, render in ((args.json, to_json), (args.html, to_html), (args.junit, to_junit)):
        if path is not None:
            try:
                path.write_text(render(report), encoding="utf-8")
            except OSError as exc:
                return fail(f"cannot write {path}: {exc.strerror or exc}")
    return report.exit_code()
