"""``mqtt-token-sim``: one command, a subcommand per part.

Each part owns its flags and its runner (a ``cli`` module with ``add_arguments`` and
``run``; each imports its heavy dependencies inside ``run``); this module wires them up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

import mock_authserver.cli
import mock_broker.cli
import scenarios.cli
from sim.customer import fleet_cli
from sim.customer.appserver import cli as appserver_cli

from . import audit, up
from .check import cli as check_cli

__all__ = ["main"]

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-token-sim",
        description="Local harness for MQTT token authentication.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO; secrets and tokens are only logged at DEBUG)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        sp.set_defaults(_runner=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from sim.shared.logredact import install_log_guards

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every logger of the process (ours, aiohttp's, asyncio's, amqtt's) ends at the root
    # handlers: no credential in a line, no flood of repeated errors.
    install_log_guards()
    try:
        return int(args._runner(args) or 0)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
