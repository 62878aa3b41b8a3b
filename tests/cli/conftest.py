"""``mqtt-token-sim`` as a user runs it: a subprocess, its exit status and its stderr."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.clirun import cli

__all__ = ["cli", "one_line", "taken_port"]


def one_line(proc: subprocess.CompletedProcess[str], status: int) -> str:
    """The run ended with ``status`` and said why in one line on stderr, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == status, (proc.returncode, proc.stdout[-2000:], err[-3000:])
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on (a Mosquitto on 1883, say)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]
