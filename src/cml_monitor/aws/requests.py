"""Counting AWS requests: the figure that proves batching works and that ops dashboards watch."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from cml_monitor.call_tally import count_aws

# botocore event names look like "before-send.ec2.DescribeInstanceStatus"; service ids may
# differ from the client name ("cloudwatch" is "cloudwatch"), so the event is the source.
Listener = Callable[[str, str], None]


class RequestCounter:
    """Counts every HTTP attempt (retries included) by service and operation."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._metric_listeners: list[Callable[[int], None]] = []
        self.metrics_requested = 0  # what CloudWatch bills GetMetricData by

    def add_listener(self, listener: Listener) -> None:
        """Also tell `listener(service, operation)` of each request (e.g. a Prometheus counter)."""
        self._listeners.append(listener)

    def on_before_send(self, event_name: str = "", **_kwargs: Any) -> None:
        """botocore `before-send` handler. Must return None, or botocore skips the request."""
        parts = event_name.split(".")
        service = parts[1] if len(parts) > 1 else "unknown"
        operation = parts[2] if len(parts) > 2 else "unknown"
        self.record(service, operation)

    def record(self, service: str, operation: str) -> None:
        with self._lock:
            self._counts[(service, operation)] += 1
        count_aws()
        for listener in self._listeners:
            listener(service, operation)

    def add_metrics_listener(self, listener: Callable[[int], None]) -> None:
        self._metric_listeners.append(listener)

    def count_metrics(self, count: int) -> None:
        """`count` metrics requested from `GetMetricData` (billed per 1,000 metrics)."""
        with self._lock:
            self.metrics_requested += count
        for listener in self._metric_listeners:
            listener(count)

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
