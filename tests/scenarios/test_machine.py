"""The Hypothesis state machine over the in-process stack (scenarios/machines.py)."""

from __future__ import annotations

from scenarios.machines import StackMachine

TestStackMachine = StackMachine.TestCase
