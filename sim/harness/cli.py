"""``mqtt-token-sim``: one command, a subcommand per part.

Each part owns its flags and its runner (a ``cli`` module with ``add_arguments`` and
``run``; each imports its heavy dependencies inside ``run``); this module wires them up,
and is the one place where a run ends (:mod:`sim.shared.exits`): 0 ok, 1 an expectation
failed, 2 could not run (one line on stderr, never a traceback), 130 interrupted.

Every flag can also come from the environment (:mod:`.envdefaults`), and ``--log-level``
goes before or after the subcommand.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType

import mock_authserver.cli
import mock_broker.cli
import scenarios.cli
from sim.customer import fleet_cli
from sim.customer.appserver import cli as appserver_cli
from sim.shared.exits import EXIT_CANNOT_RUN, EXIT_INTERRUPTED, CannotRun

from . import audit, up
from .check import cli as check_cli
from .envdefaults import GLOBAL_PREFIX, apply_env_defaults

__all__ = ["PROG", "build_parser", "main", "version"]

PROG = "mqtt-token-sim"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# subcommand -> (module with add_arguments/run, one-line help)
SUBCOMMANDS: dict[str, tuple[ModuleType, str]] = {
    "authserver": (mock_authserver.cli, "run the mock AuthServer (token API, admin API)"),
    "broker": (mock_broker.cli, "run the token-enforcing MQTT broker"),
    "appserver": (appserver_cli, "run the reference AppServer"),
    "up": (up, "run AuthServer, broker and AppServer together"),
    "fleet": (fleet_cli, "run a fleet of token-aware clients"),
    "run": (scenarios.cli, "run a scenario and report its figures"),
    "check": (check_cli, "check your own AppServer against the seed's rules"),
    "audit": (audit, "which devices broke the seed's client rules (a broker's device audit)"),
}

#: Libraries that narrate every connection at INFO (amqtt, its state machines, gmqtt):
#: an operator's INFO says what happened, not each connection.  Their level unless
#: ``--log-level DEBUG``.
NARRATORS: Mapping[str, int] = {
    "amqtt": logging.WARNING,
    "transitions": logging.WARNING,
    # gmqtt warns about every socket a broker closes (a kick, an expiry, a restart); the
    # SDK counts those and the fleet's summary shows them.
    "gmqtt": logging.ERROR,
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("mqtt-token-sim")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout, not installed
        return "unknown (not installed)"


def _add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging level (default INFO: what happened, not each connection; secrets "
        "and tokens never appear at INFO); before or after the subcommand",
    )


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser, with defaults from ``env`` (default: none, the bare flags).  Problems
    with the environment are kept on each subcommand's ``_env_problems``."""
    env = {} if env is None else env
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local harness for MQTT token authentication.",
        epilog="exit status: 0 ok, 1 an expectation failed, 2 could not run, 130 interrupted."
        f"  Every flag can be set as {GLOBAL_PREFIX}<COMMAND>_<FLAG> (docs/stack.md).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    _add_log_level(parser, env.get(f"{GLOBAL_PREFIX}LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        # After the subcommand too (docs/scenarios.md puts it there); not given there,
        # the global one stands.
        _add_log_level(sp, argparse.SUPPRESS)
        problems = apply_env_defaults(sp, name, env)
        sp.set_defaults(_runner=module.run, _env_problems=problems)
    return parser


def configure_logging(level: str) -> None:
    from sim.shared.logredact import install_log_guards

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every logger of the process (ours, aiohttp's, asyncio's, amqtt's) ends at the root
    # handlers: no credential in a line, no flood of repeated errors.
    install_log_guards()
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name, at_least in NARRATORS.items():
            logging.getLogger(name).setLevel(at_least)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        parser = build_parser(env)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    name = f"{PROG} {args.command}"
    if args._env_problems:
        for problem in args._env_problems:
            print(f"{name}: environment: {problem}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    configure_logging(args.log_level)
    try:
        return int(args._runner(args) or 0)
    except CannotRun as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        # A Ctrl-C outside a command's own handling (while it starts): no traceback.
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A bug, not a mistake of the user's: one line, the traceback at DEBUG.
        logging.getLogger(__name__).debug("%s failed", name, exc_info=True)
        print(
            f"{name}: unexpected error: {type(exc).__name__}: {exc}"
            " (--log-level DEBUG shows where)",
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
