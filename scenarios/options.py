"""Every scenario's ``--set NAME=VALUE`` options, declared (docs/scenarios.md "Scenario
options"): the command line refuses an unknown name (``rouds=1`` is a typo, not a
default) and a value of the wrong kind (``method=teleport``) before anything starts.

The scenarios read their options with ``ctx.option(name, default)``; a test checks that
every name they read is declared here.  Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["COMMON", "OPTIONS", "Option", "check_options"]

_BOOLS = ("1", "0", "true", "false", "yes", "no", "on", "off")


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # bool, int, float or str
    choices: tuple[str, ...] = ()
    #: the least value a number may take
    minimum: float | None = None
    #: a number must be above ``minimum`` (not equal)
    above: bool = False

    def check(self, raw: str) -> None:
        """Raise :class:`ValueError` saying what ``raw`` should be."""
        text = raw.strip()
        if self.kind is bool:
            if text.lower() not in _BOOLS:
                raise ValueError(f"{self.name} must be true or false, got {raw!r}")
            return
        if self.kind in (int, float):
            try:
                value = self.kind(text)
            except ValueError:
                what = "a whole number" if self.kind is int else "a number"
                raise ValueError(f"{self.name} must be {what}, got {raw!r}") from None
            if self.minimum is not None and (
                value < self.minimum or (self.above and value == self.minimum)
            ):
                bound = f"> {self.minimum:g}" if self.above else f">= {self.minimum:g}"
                raise ValueError(f"{self.name} must be {bound}, got {raw!r}")
            return
        if self.choices and text not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {raw!r}")


def _pos(name: str, kind: type = float) -> Option:
    return Option(name, kind, minimum=0, above=True)


def _nonneg(name: str, kind: type = float) -> Option:
    return Option(name, kind, minimum=0)


#: Options every scenario takes (docs/scenarios.md "Command line"): ``stack_process``
#: (the embedded stack in a child process, read by scenarios.base); ``defect`` (a named
#: defect put into the harness's own parts to show the scenario can fail; its names are
#: the scenario's, checked by ``scenarios.base.check_defect``); ``broker_fidelity_url``
#: (an external broker's GET /fidelity URL, for the report); with ``--adapter``:
#: ``appserver_restart_cmd`` (the command that restarts your AppServer),
#: ``authserver_port`` (the port of the AuthServer the harness starts, the one your
#: AppServer calls) and ``first_client`` (the first ``[clients]`` number to use).
COMMON: tuple[Option, ...] = (
    Option("stack_process", bool),
    Option("defect", str),
    Option("broker_fidelity_url", str),
    Option("appserver_restart_cmd", str),
    Option("authserver_port", int, minimum=1),
    _nonneg("first_client", int),
)

OPTIONS: Mapping[str, tuple[Option, ...]] = {
    "reconnect-storm": (
        Option("method", str, choices=("kick", "restart")),
        _pos("jitter_factor"),
        _pos("budget_factor"),
        _nonneg("slack_s"),
        Option("raw_concurrency", int, minimum=1),
        Option("subscribe", bool),
        _pos("deadline_s"),
        Option("rounds", int, minimum=1),
        _nonneg("stable_session_s"),
    ),
    "cache-reuse": (Option("concurrency", int, minimum=1),),
    "outage-recovery": (
        _nonneg("new_clients", int),
        _pos("outage_s"),
        _pos("deadline_s"),
        _pos("drain_rate"),
        Option("drain_burst", int, minimum=1),
    ),
    "expiry-refresh": (
        Option("lifetimes", int, minimum=1),
        Option("mode", str, choices=("upload", "reconnect", "mixed")),
        _pos("publish_every_s"),
    ),
    "revocation": (Option("revoke", int, minimum=1), _pos("limit_s")),
}


def check_options(scenario: str, options: Mapping[str, str]) -> None:
    """Raise :class:`ValueError` for an option ``scenario`` does not declare, or a value
    it would not take; the message names the options it has."""
    declared = {o.name: o for o in (*OPTIONS.get(scenario, ()), *COMMON)}
    for name, raw in options.items():
        option = declared.get(name)
        if option is None:
            known = ", ".join(sorted(declared))
            raise ValueError(f"{scenario} has no option {name!r}; its options: {known}")
        option.check(raw)
