"""Reading the parts' Prometheus text (pure).

Scenarios count what the AuthServer and the AppServer did from their own
``/admin/metrics`` (the same numbers an operator would watch), so the figures hold for
an embedded stack and for external endpoints alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsSnapshot", "parse_metrics"]


@dataclass(frozen=True)
class MetricsSnapshot:
    """Every sample of one scrape: ``(sample name, sorted labels) -> value``."""

    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``
        (a label value may be ``"a|b"`` to accept either)."""
        wanted = {k: set(v.split("|")) for k, v in labels.items()}
        out = 0.0
        for (sample, sample_labels), value in self.samples.items():
            if sample != name:
                continue
            have = dict(sample_labels)
            if all(have.get(k) in vs for k, vs in wanted.items()):
                out += value
        return out

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def label_values(self, name: str, label: str) -> set[str]:
        return {
            dict(labels)[label]
            for sample, labels in self.samples
            if sample == name and label in dict(labels)
        }


def parse_metrics(text: str) -> MetricsSnapshot:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            samples[key] = samples.get(key, 0.0) + float(s.value)
    return MetricsSnapshot(samples)
