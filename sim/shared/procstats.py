"""The one reader of a process's resource use: resident memory and CPU time (Linux
``/proc``; ``getrusage`` for this process).  Benchmarks, the fleet summary and the
scenarios' child stack read these."""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = ["cpu_seconds", "rss_kb"]


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of ``pid`` in KiB, from ``/proc/<pid>/status``.

    Raises :class:`OSError` when there is no such process (or no ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise OSError(f"/proc/{pid}/status has no VmRSS")


def cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU seconds of this process (``pid=None``) or of ``pid``
    (``/proc/<pid>/stat`` fields 14 and 15).  Raises :class:`OSError` when ``pid`` is
    gone or unreadable."""
    if pid is None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after its ")".
    fields = text.rsplit(")", 1)[1].split()
    try:
        ticks = int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        raise OSError(f"/proc/{pid}/stat is not in the expected format") from None
    return ticks / os.sysconf("SC_CLK_TCK")
