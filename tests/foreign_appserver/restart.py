"""Restart the foreign AppServer and return once the new process answers:
``python tests/foreign_appserver/restart.py URL PID`` (the ``--restart-cmd`` of its
checks).  It signals SIGHUP (the server re-executes itself on the same port) and waits
until ``GET /health`` names another boot: so the old process is gone for sure.

With ``--return-when-down`` it returns as soon as the old process stops answering, before
the new one listens (as ``kill`` followed by a slow start would): the check must wait."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request


def boot(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return str(json.load(resp)["boot"])
    except OSError:
        return None


def main(url: str, pid: int, when_down: bool) -> int:
    old = boot(url)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = boot(url)
        if when_down and now is None:
            return 0
        if now is not None and now != old:
            return 0
        time.sleep(0.05)  # another process starting: polled
    print("the foreign AppServer did not come back within 30 s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), "--return-when-down" in sys.argv[3:]))
