"""What the benchmarks read off a process: resident memory and CPU time (Linux)."""

from __future__ import annotations

import resource
from pathlib import Path


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def cpu_seconds() -> float:
    """User plus system CPU time of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
