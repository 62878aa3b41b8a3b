"""``mqtt-token-sim``: one command, a subcommand per part.

Each part owns its flags and its runner (``<package>/cli.py`` with ``add_arguments``
and ``run``); this module only wires them up, importing each lazily so that
``mqtt-token-sim authserver`` does not pay for the broker's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# subcommand -> (module with add_arguments/run, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "authserver": ("mock_authserver.cli", "run the mock AuthServer (token API, admin API)"),
    "broker": ("mock_broker.cli", "run the token-enforcing MQTT broker"),
    "appserver": ("sim.appserver.cli", "run the reference AppServer"),
    "up": ("sim.stack_cli", "run AuthServer, broker and AppServer together"),
    "fleet": ("sim.fleet_cli", "run a fleet of token-aware clients"),
    "run": ("scenarios.cli", "run a scenario and report its figures"),
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
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue  # that part is not built yet
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        sp.set_defaults(_runner=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._runner(args) or 0)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
