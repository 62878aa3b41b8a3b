"""The one percentile (sim.shared.stats): numpy's default, R's type 7."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.stats import percentile


# Compared with the standard library's "inclusive" method (the same definition).
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=50), st.integers(1, 99))
def test_percentile_matches_statistics_inclusive(values, p):
    expected = statistics.quantiles(values, n=100, method="inclusive")[p - 1]
    assert percentile(values, p) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_percentile_edges():
    assert math.isnan(percentile([], 50))
    assert percentile([7], 99) == 7
    assert percentile([3, 1, 2], 0) == 1
    assert percentile([3, 1, 2], 100) == 3
    assert percentile([1, 2, 3, 4], 50) == 2.5
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_the_fleet_and_a_scenario_report_the_same_p95():
    """One definition: the fleet summary's p95 is the scenario figure's p95 (they were
    different numbers when the fleet took the nearest rank)."""
    from scenarios.report import latency_figures
    from sim.customer.fleet_cli import latency_summary

    seconds = [0.001 * i for i in range(1, 21)]  # 1..20 ms
    fleet = latency_summary(seconds)
    figures = latency_figures("x", seconds)
    assert fleet["p95"] == round(figures["x_p95_ms"], 1) == 19.1
    assert fleet["p50"] == round(figures["x_p50_ms"], 1)
