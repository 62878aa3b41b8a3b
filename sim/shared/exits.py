"""How every command ends (README, docs/stack.md "Exit status"): pure.

=====  ==============================================================================
0      it ran: a server stopped by Ctrl-C/SIGTERM, every expectation passed
1      it ran and an expectation failed (a scenario, a check, a fleet not all connected)
2      it could not run: a bad flag or value, a port taken, an endpoint unreachable
130    interrupted (Ctrl-C) before it finished what it was asked
=====  ==============================================================================

A command that cannot run raises :class:`CannotRun` with one line for the user; the
command line (``sim.harness.cli``) prints ``mqtt-token-sim COMMAND: <line>`` on stderr
and exits 2.  No traceback reaches a user for a mistake of theirs or of their machine.
"""

from __future__ import annotations

import errno

__all__ = [
    "EXIT_CANNOT_RUN",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "CannotRun",
    "cannot_listen",
    "os_error_of",
    "why_not_listening",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_INTERRUPTED = 130


class CannotRun(Exception):
    """The command cannot do what it was asked; ``str(exc)`` is the one line to show."""


_REASONS = {
    errno.EADDRINUSE: "the address is already in use (another program listens there)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's",
}


def os_error_of(exc: BaseException) -> OSError | None:
    """The first :class:`OSError` in ``exc``'s chain (amqtt wraps a failed bind in its
    ``BrokerError``; aiohttp raises the OSError itself)."""
    seen: BaseException | None = exc
    for _ in range(16):  # a chain is short; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def why_not_listening(exc: BaseException) -> str | None:
    """Why a listener could not start, in words, or None when ``exc`` is no bind error
    (a file's error names its file: that is not a port's)."""
    err = os_error_of(exc)
    if err is None or err.filename is not None or err.errno not in _REASONS:
        return None
    return _REASONS[err.errno]


def cannot_listen(exc: BaseException, part: str, where: str, flag: str) -> CannotRun | None:
    """``exc`` as the one line a user needs -- which part, where, why, which flag picks
    another port -- or None when ``exc`` is not a failed bind."""
    why = why_not_listening(exc)
    if why is None:
        return None
    return CannotRun(f"the {part} cannot listen on {where}: {why}; choose another with {flag}")
