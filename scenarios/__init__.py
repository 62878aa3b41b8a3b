"""Scenarios with figures: storm, cache reuse, outage, expiry/refresh, revocation (SPEC §7).

Public face::

    from scenarios import ScenarioParams, run_scenario
    report = await run_scenario("reconnect-storm", ScenarioParams(clients=500))
    report.figures["reconnect_seconds"], report.passed, report.to_json()

Modules: :mod:`.report` (the JSON schema, summary, HTML; pure), :mod:`.errors` (the
error tree), :mod:`.base` (registry and runner), :mod:`.env` (the one stack of
:mod:`sim.harness.stack` in this process, or external endpoints), :mod:`.stack_proc` (the
same stack in a child process), :mod:`.cli` (``mqtt-token-sim run``), one module per
scenario, :mod:`.machines` (Hypothesis state machine), ``locustfile.py`` (Locust users).
"""

from .base import SCENARIOS, ScenarioParams, run_scenario
from .report import SCHEMA_VERSION, Expectation, ScenarioReport

__all__ = [
    "SCENARIOS",
    "SCHEMA_VERSION",
    "Expectation",
    "ScenarioParams",
    "ScenarioReport",
    "run_scenario",
]
