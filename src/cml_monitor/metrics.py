"""Prometheus metrics under the names dashboards and alert rules rely on, in a registry of our own.

A registry per app rather than the process-global one, so that two apps in one process (tests,
the demo) never collide, and `/metrics` shows exactly this service.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cml_monitor.domain import WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.actions import Action
from cml_monitor.storage.rows import REJECTABLE_TABLES

WORKER_LABELS = ("worker_id", "worker_name")


class PrometheusMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cpu = self._worker_gauge(
            "cml_monitor_worker_cpu_utilization", "CPU utilisation of a worker, percent"
        )
        self.memory = self._worker_gauge(
            "cml_monitor_worker_memory_utilization", "Memory utilisation of a worker, percent"
        )
        self.up = self._worker_gauge("cml_monitor_worker_up", "1 when the worker's instance is running")
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
        self.last_collection = Gauge(
            "cml_monitor_last_collection_timestamp_seconds",
            "When the region's last collection completed, Unix time (every replica exports it)",
            ("region",),
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
        # Set when /metrics is scraped (no timer): a count that keeps rising is a task leak.
        self.asyncio_tasks = Gauge(
            "cml_monitor_asyncio_tasks",
            "asyncio tasks alive on the service's event loop when /metrics was read",
            registry=self.registry,
        )
        self.cml_up = self._worker_gauge("cml_monitor_cml_up", "1 when the worker's CML controller answered")
        self.cml_healthy = self._worker_gauge(
            "cml_monitor_cml_healthy", "1 when the controller is ready and every compute healthy and admitted"
        )
        self.license_expiry = self._worker_gauge(
            "cml_monitor_cml_license_expiry_timestamp_seconds",
            "When the controller's licence registration or authorization expires, Unix time",
        )
        self.labs_started = self._worker_gauge("cml_monitor_cml_labs_started", "Labs in state STARTED")
        self.idle = self._worker_gauge("cml_monitor_worker_idle", "1 when the worker is idle")
        self.actions = Counter(
            "cml_monitor_actions_total",
            "Stops, starts and reboots by their outcome",
            ("kind", "reason", "result"),
            registry=self.registry,
        )
        self.cloudwatch_metrics = Counter(
            "cml_monitor_cloudwatch_metrics_requested",
            "Metrics requested from CloudWatch GetMetricData (what CloudWatch bills, per 1,000)",
            registry=self.registry,
        )
        self.aws_events = Counter(
            "cml_monitor_aws_events_total",
            "EventBridge messages from the events queue, by type and what became of them",
            ("type", "result"),
            registry=self.registry,
        )
        self.running_nodes = self._worker_gauge(
            "cml_monitor_cml_running_nodes", "Nodes running on the cluster"
        )
        self.rejected_rows = Counter(
            "cml_monitor_rejected_rows",
            "Rows the database refused and that were dropped while the rest of their batch was written",
            ("table",),
            registry=self.registry,
        )
        for table in REJECTABLE_TABLES:  # at 0 from the start: a rate() needs the series to exist
            self.rejected_rows.labels(table)
        self._names: dict[str, str] = {}
        self._series: dict[str, set[Gauge]] = {}  # worker id → the gauges it has a series in

    def _worker_gauge(self, name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, WORKER_LABELS, registry=self.registry)

    def on_action(self, action: Action) -> None:
        self.actions.labels(action.kind.value, action.reason.value, action.result.value).inc()

    def on_rejected_row(self, table: str) -> None:
        self.rejected_rows.labels(table).inc()

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
        cml = event.cml if event.status is WorkerStatus.RUNNING else None
        expires = cml.license_expires_at if cml else None
        values: dict[Gauge, float | None] = {
            self.cpu: event.cpu_utilization,
            self.memory: event.memory_utilization,
            self.up: 1 if event.status is WorkerStatus.RUNNING else 0,
            self.cml_up: None if cml is None else float(bool(cml.reachable)),
            self.cml_healthy: None if cml is None or not cml.reachable else float(cml.health_problem is None),
            self.license_expiry: None if expires is None else expires.timestamp(),
            self.labs_started: None if cml is None else cml.labs_started,
            self.running_nodes: None if cml is None else cml.running_nodes,
            self.idle: float(event.idle.idle),
        }
        series = self._series.setdefault(worker_id, set())
        for gauge, value in values.items():
            if value is not None:
                gauge.labels(worker_id, name).set(value)
                series.add(gauge)
            elif gauge in series:
                series.discard(gauge)
                _remove(gauge, worker_id, name)

    def forget(self, worker_id: str) -> None:
        """Drop a removed worker's series."""
        name = self._names.pop(worker_id, None)
        series = self._series.pop(worker_id, set())
        if name is None:
            return
        for gauge in series:
            _remove(gauge, worker_id, name)


def _remove(gauge: Gauge, worker_id: str, name: str) -> None:
    try:
        gauge.remove(worker_id, name)
    except KeyError:
        pass
