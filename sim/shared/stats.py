"""The one percentile of the project (pure): every p50/p95/p99 a figure, a fleet summary
or a benchmark prints is this number.

Definition: linear interpolation between the closest ranks, numpy's default and R's
"type 7", the same as ``statistics.quantiles(..., method="inclusive")``.  For sorted
values ``x[0..n-1]`` the ``p``-th percentile is ``x[k] + (x[k+1] - x[k]) * f`` with
``k + f = (n - 1) * p / 100``.  So p0 is the minimum, p100 the maximum, p50 of an even
count the mean of the middle two; a single value is every percentile of itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["percentile"]


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (``0 <= p <= 100``) of ``values``; ``nan`` when empty."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p!r}")
    data = sorted(values)
    if not data:
        return math.nan
    rank = (len(data) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (rank - lo))
