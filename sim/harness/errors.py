"""The harness's one error tree::

HarnessError
├── AdminError              an admin API call failed (sim.harness.admin)
│   ├── AdminUnreachable    nothing answered at the part's URL
│   └── AdminRefused        the part answered an error status (``status``, ``message``)
├── StackError              a lever this stack does not have (an external part, no
│   │                       manual clock), or a part that would not start
│   ├── PartDidNotStart     a part could not listen (``part``, ``host``, ``port``)
│   └── ClientNotConnected  a test's client did not connect (the pytest plugin says
│                           what it waited for and why nothing more would happen)
└── LoopNotIdle             the event loop never rested (sim.harness.idle)
"""

from __future__ import annotations

__all__ = [
    "AdminError",
    "AdminRefused",
    "AdminUnreachable",
    "ClientNotConnected",
    "HarnessError",
    "LoopNotIdle",
    "PartDidNotStart",
    "StackError",
]


class HarnessError(Exception):
    """Something the harness was asked to do failed."""


class AdminError(HarnessError):
    """An admin API call failed."""


class AdminUnreachable(AdminError):
    """Nothing answered at the part's URL."""


class AdminRefused(AdminError):
    """The part answered with an error status."""

    def __init__(self, what: str, status: int, message: str):
        super().__init__(f"{what} answered {status}: {message}")
        self.status = status
        self.message = message


class StackError(HarnessError):
    """A stack lever this stack does not have, or a part that would not start."""


class LoopNotIdle(HarnessError):
    """The event loop did not go idle in time: something runs without ever waiting."""


class PartDidNotStart(StackError):
    """A part of the stack could not listen: its port is taken, or not allowed."""

    def __init__(self, part: str, host: str, port: int, why: str):
        super().__init__(f"the {part} cannot listen on {host}:{port}: {why}")
        self.part = part
        self.host = host
        self.port = port
        self.why = why


class ClientNotConnected(StackError, AssertionError):
    """A test's client did not connect; the message says what it waited for, its state
    and its last events.  An :class:`AssertionError` too, so that a test fails on it."""
