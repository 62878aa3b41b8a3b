"""Every flag of every command from the environment, one scheme (docs/stack.md):

    MQTT_TOKEN_SIM_<COMMAND>_<FLAG>      e.g. MQTT_TOKEN_SIM_BROKER_PROFILE=mqtt
    MQTT_TOKEN_SIM_LOG_LEVEL             the global --log-level

``<FLAG>`` is the long flag without its dashes, upper case, ``-`` as ``_``
(``--password-hash-cost`` -> ``PASSWORD_HASH_COST``).  A flag on the command line wins
over the environment, the environment over the default.  Switches (``--no-dev-client``)
take ``true``/``false`` (``1``/``0``, ``yes``/``no``, ``on``/``off``: anything else is an
error, never quietly true); repeatable flags (``--set``) take their values separated by
spaces.  A variable of a command's prefix that names none of its flags is an error: a
misspelt setting does not pass silently.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from mock_broker.config import parse_bool

__all__ = ["GLOBAL_PREFIX", "apply_env_defaults", "env_name"]

GLOBAL_PREFIX = "MQTT_TOKEN_SIM_"
#: Flags that are not settings (or are set globally).
_SKIP = frozenset({"help", "version", "log_level"})


def env_name(command: str, flag: str) -> str:
    """``("up", "--broker-port")`` -> ``MQTT_TOKEN_SIM_UP_BROKER_PORT``."""
    return f"{GLOBAL_PREFIX}{command}_{flag.lstrip('-')}".upper().replace("-", "_")


def _one(action: argparse.Action, raw: str) -> object:
    value: object = action.type(raw) if callable(action.type) else raw
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"invalid choice {raw!r} (choose from {choices})")
    return value


def _value(action: argparse.Action, raw: str) -> object:
    if action.nargs == 0:  # a switch: store_true, store_false, store_const
        return action.const if parse_bool(raw) else action.default
    if isinstance(action, argparse._AppendAction):
        return [_one(action, item) for item in raw.split()]
    return _one(action, raw)


def apply_env_defaults(
    parser: argparse.ArgumentParser, command: str, env: Mapping[str, str]
) -> list[str]:
    """Set ``parser``'s defaults from ``env``; return the problems found (one line each)."""
    problems: list[str] = []
    known: set[str] = set()
    for action in parser._actions:  # argparse has no public list of a parser's actions
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or action.dest in _SKIP:
            continue
        name = env_name(command, longs[0])
        known.add(name)
        raw = env.get(name)
        if raw is None:
            continue
        try:
            value = _value(action, raw)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            problems.append(f"{name}={raw!r}: {exc}")
            continue
        parser.set_defaults(**{action.dest: value})
        action.required = False
    prefix = f"{GLOBAL_PREFIX}{command.upper()}_"
    for key in sorted(env):
        if key.startswith(prefix) and key not in known:
            problems.append(f"{key}: {command} has no flag --{_flag_of(key, prefix)}")
    return problems


def _flag_of(key: str, prefix: str) -> str:
    return key[len(prefix) :].lower().replace("_", "-")
