"""Metrics read the way Prometheus reads them: exposition text, parsed by prometheus_client's
own parser (never searched as a string)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]  # name, labels, value


def samples(text: str) -> list[Sample]:
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels` (None if there is none)."""
    found = [
        value
        for sample, sample_labels, value in samples(text)
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, f"{name}{labels} is ambiguous: {found}"
    return found[0] if found else None
