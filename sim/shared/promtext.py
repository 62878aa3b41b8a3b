"""The one reader of Prometheus text (pure): a scrape of ``/admin/metrics`` becomes
samples, summed by labels.

Used wherever a figure or a test reads another part's counters over its admin API
(the same numbers an operator would watch).  Parsing is prometheus_client's own parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsSnapshot", "parse_metrics"]

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MetricsSnapshot:
    """Every sample of one scrape: ``(sample name, sorted labels) -> value``."""

    samples: Mapping[tuple[str, Labels], float]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (a label
        value may be ``"a|b"`` to accept either); 0 when there is none.

        A counter's samples are called ``<name>_total``: ``total("x")`` sums the samples
        of counter ``x`` too, so callers may name the family or the sample."""
        wanted = {k: set(v.split("|")) for k, v in labels.items()}
        names = {name} if name.endswith("_total") else {name, f"{name}_total"}
        out = 0.0
        for (sample, sample_labels), value in self.samples.items():
            if sample not in names:
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
    """Parse Prometheus text exposition; :class:`ValueError` when it is not that."""
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            samples[key] = samples.get(key, 0.0) + float(s.value)
    return MetricsSnapshot(samples)
