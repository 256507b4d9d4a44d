"""`/metrics` of `serve` shows what its collector child counts, merged with its own series.

Chosen over deriving them in the API process: the counters (AWS requests, notifications,
actions, CloudWatch metrics, observer failures), the cycle histogram and the firing-alerts gauge
are only known where the work is done. The child sends its exposition every second over the
local channel; the parent keeps the last one and merges it at scrape time. The worker gauges
are not taken from the child: the parent derives them from the events it receives, as an API
replica does behind Redis.

Merging: counters and histograms add up (the parent counts the AWS calls and actions it makes
itself, a manual stop say); a gauge is the child's value when it has one. After a child restart
its counters start again from zero, which Prometheus' `rate()` treats as the counter reset it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from cml_monitor.metrics import WORKER_LABELS, PrometheusMetrics

logger = logging.getLogger(__name__)


def collector_owned(metrics: PrometheusMetrics) -> list[Counter | Gauge | Histogram]:
    """The metrics the collection sets (every one but the per-worker gauges)."""
    return [
        value
        for value in vars(metrics).values()
        if isinstance(value, Counter | Gauge | Histogram)
        and tuple(getattr(value, "_labelnames", ())) != WORKER_LABELS
    ]


def _key(sample: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
    return sample.name, tuple(sorted(sample.labels.items()))


class CollectorMetricsRelay(Collector):
    """Stands in the parent's registry for the collector-owned metrics, merged with the child's."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self._own = collector_owned(metrics)
        for metric in self._own:
            metrics.registry.unregister(metric)
        metrics.registry.register(self)
        self._child: dict[str, Metric] = {}

    def on_snapshot(self, kind: str, message: dict[str, Any]) -> None:
        if kind != "metrics":
            return
        try:
            self._child = {family.name: family for family in text_string_to_metric_families(message["text"])}
        except (KeyError, ValueError, TypeError) as exc:
            logger.warning("Ignored a malformed metrics snapshot from the collector: %s", exc)

    def forget_child(self) -> None:
        """The child is gone: its counters are no longer shown (they restart with it)."""
        self._child = {}

    def collect(self) -> Iterator[Metric]:
        child = self._child
        for metric in self._own:
            for family in metric.collect():
                theirs = child.get(family.name)
                if theirs is not None and theirs.type == family.type:
                    family.samples = _merge(family.type, family.samples, theirs.samples)
                yield family


def _merge(kind: str, ours: Iterable[Sample], theirs: Iterable[Sample]) -> list[Sample]:
    merged = {_key(sample): sample for sample in ours}
    for sample in theirs:
        key = _key(sample)
        mine = merged.get(key)
        if mine is None:
            merged[key] = sample
        elif kind == "gauge":
            merged[key] = mine._replace(value=sample.value)
        elif not sample.name.endswith("_created"):
            merged[key] = mine._replace(value=mine.value + sample.value)
    return list(merged.values())
