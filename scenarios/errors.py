"""The scenarios' one error tree::

    ScenarioError
    ├── StackUnavailable    the stack is not usable (down, wrong URL, admin API refused)
    │   └── Unsupported     a lever only a stack the run started has (kick every client,
    │                       restart a part) was asked of external endpoints
    └── ReportError         a report document does not follow the schema (a ValueError)

A crash of a scenario becomes a report with ``error`` set (:func:`scenarios.base.run_scenario`);
these say what went wrong in words a user can act on.
"""

from __future__ import annotations

__all__ = ["ReportError", "ScenarioError", "StackUnavailable", "Unsupported"]


class ScenarioError(Exception):
    """A scenario could not do what it was asked."""


class StackUnavailable(ScenarioError):
    """The stack is not usable (down, wrong URL, admin API refused)."""


class Unsupported(StackUnavailable):
    """A lever only a stack started by the run has was asked of external endpoints."""


class ReportError(ScenarioError, ValueError):
    """A report document does not follow the schema."""
