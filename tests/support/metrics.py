"""Reading the Prometheus text that /metrics answers, with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_value(text: str, sample: str, **labels: str) -> float | None:
    """The value of the sample named `sample` (e.g. `roomservice_rooms_created_total`) whose labels
    include `labels`; None if there is none. Several matching samples are added up."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None
