"""The Hypothesis state machine over the in-process stack (scenarios/machines.py)."""

from __future__ import annotations

from scenarios.machines import DEFAULT_SETTINGS, run_machine


def test_stack_machine_against_its_model():
    run_machine(DEFAULT_SETTINGS)
