"""Prometheus metrics under the names dashboards and alert rules rely on, in a registry of our own.

A registry per app rather than the process-global one, so that two apps in one process (tests,
the demo) never collide, and `/metrics` shows exactly this service.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cml_monitor.domain import WorkerMetricsCollected, WorkerStatus

WORKER_LABELS = ("worker_id", "worker_name")


class PrometheusMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cpu = Gauge(
            "cml_monitor_worker_cpu_utilization",
            "CPU utilisation of a worker, percent",
            WORKER_LABELS,
            registry=self.registry,
        )
        self.memory = Gauge(
            "cml_monitor_worker_memory_utilization",
            "Memory utilisation of a worker, percent",
            WORKER_LABELS,
            registry=self.registry,
        )
        self.up = Gauge(
            "cml_monitor_worker_up",
            "1 when the worker's instance is running",
            WORKER_LABELS,
            registry=self.registry,
        )
        self.aws_requests = Counter(
            "cml_monitor_aws_requests_total",
            "AWS HTTP requests, retries included",
            ("service", "operation"),
            registry=self.registry,
        )
        self.collection_seconds = Histogram(
            "cml_monitor_collection_seconds",
            "Wall time of one batched collection",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.alerts_firing = Gauge(
            "cml_monitor_alerts_firing", "Alerts currently firing", registry=self.registry
        )
        self.notifications = Counter(
            "cml_monitor_notifications_total",
            "Notification deliveries",
            ("channel", "result"),
            registry=self.registry,
        )
        self.observer_failures = Counter(
            "cml_monitor_observer_failures_total",
            "Batches an observer of the monitoring loop failed on or timed out on",
            ("observer",),
            registry=self.registry,
        )
        self._names: dict[str, str] = {}

    def on_aws_request(self, service: str, operation: str) -> None:
        self.aws_requests.labels(service, operation).inc()

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Observer of the monitoring loop: refresh each worker's gauges."""
        for event in events:
            self._update(event)

    def _update(self, event: WorkerMetricsCollected) -> None:
        worker_id, name = event.worker_id, event.worker_name or event.worker_id
        old_name = self._names.get(worker_id)
        if old_name is not None and old_name != name:
            self.forget(worker_id)
        self._names[worker_id] = name
        for gauge, value in ((self.cpu, event.cpu_utilization), (self.memory, event.memory_utilization)):
            if value is None:
                try:
                    gauge.remove(worker_id, name)
                except KeyError:
                    pass
            else:
                gauge.labels(worker_id, name).set(value)
        self.up.labels(worker_id, name).set(1 if event.status is WorkerStatus.RUNNING else 0)

    def forget(self, worker_id: str) -> None:
        """Drop a removed worker's series."""
        name = self._names.pop(worker_id, None)
        if name is None:
            return
        for gauge in (self.cpu, self.memory, self.up):
            try:
                gauge.remove(worker_id, name)
            except KeyError:
                pass
