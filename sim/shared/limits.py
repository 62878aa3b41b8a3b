"""Process limits for processes that hold thousands of sockets.

Many systems give a process a soft limit of 1,024 open files; a broker or a fleet of
thousands of clients needs one descriptor per connection.  Shared by every part (the
provider-side packages may import it, as they import :mod:`sim.shared.clock`).
"""

from __future__ import annotations

import contextlib
import resource

__all__ = ["raise_nofile_limit"]


def raise_nofile_limit(wanted: int | None = None) -> int:
    """Lift the soft RLIMIT_NOFILE towards ``wanted`` (default: the hard limit), never
    past the hard limit and never down; return the soft limit now in force."""
    inf = resource.RLIM_INFINITY  # -1 on Linux: compare with care
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == inf:
        return soft
    target = hard if wanted is None else wanted
    if hard != inf:
        target = min(target, hard)
    if target == inf or target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
