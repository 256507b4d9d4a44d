"""Prometheus metrics under the names dashboards and alert rules rely on, in a registry of our own.

A registry per app rather than the process-global one, so that two apps in one process (tests,
the demo) never collide, and `/metrics` shows exactly this service.

Conventions a Prometheus user expects, kept here:
- units in the names (`…_percent`, `…_seconds`, `…_timestamp_seconds`);
- no `_created` series (prometheus_client's per-series creation time doubles the series count and
  no query of ours needs it);
- every labelled counter exports its known label sets at 0 from the start, so `rate()` and
  `increase()` see the first event instead of a series appearing from nowhere;
- `cml_monitor_worker_info` (always 1) carries the labels a query joins on (`instance_id`,
  `region`, `cml_version`) so that the per-worker gauges need only `worker_id, worker_name`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from cml_monitor.domain import WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.actions import Action, ActionKind, ActionReason, ActionResult
from cml_monitor.domain.alerts import SEVERITY
from cml_monitor.storage.rows import REJECTABLE_TABLES

disable_created_metrics()

WORKER_LABELS = ("worker_id", "worker_name")
INFO_LABELS = ("worker_id", "worker_name", "instance_id", "region", "cml_version")
ALERT_LABELS = ("worker_id", "worker_name", "kind", "severity")

# The AWS operations the monitor makes (botocore's service and operation names).
AWS_OPERATIONS = (
    ("ec2", "DescribeInstanceStatus"),
    ("ec2", "DescribeInstances"),
    ("ec2", "StartInstances"),
    ("ec2", "StopInstances"),
    ("ec2", "RebootInstances"),
    ("cloudwatch", "GetMetricData"),
    ("cloudwatch", "ListMetrics"),
    ("sqs", "ReceiveMessage"),
    ("sqs", "DeleteMessageBatch"),
)
NOTIFICATION_RESULTS = ("sent", "retry", "failed")
NOTIFICATION_CHANNELS = ("webhook", "slack", "pagerduty", "opsgenie", "alertmanager")
AWS_EVENT_RESULTS = {
    "state_change": ("applied", "stale", "unknown_instance", "failed"),
    "scheduled_change": ("applied", "unknown_instance", "failed"),
    "unknown": ("foreign", "malformed"),
}
OBSERVERS = (
    "AlertEngine",  # the seed's WorkerNotificationHandler
    "AutomaticActions",
    "PrometheusMetrics",
    "EventHub",
    "RedisEventBus",
)
STATUS_CHECKS = ("system", "instance")
# Alert kinds the engine knows, plus the fleet-level one (no worker) raised by the collection.
FLEET_ALERT_KINDS = {"collection_failing": "critical"}


def alert_severities() -> dict[str, str]:
    """Every alert kind with its severity, the fleet-level ones included."""
    return {**{kind.value: severity for kind, severity in SEVERITY.items()}, **FLEET_ALERT_KINDS}


class PrometheusMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cpu = self._worker_gauge(
            "cml_monitor_worker_cpu_utilization_percent", "CPU utilisation of a worker, percent"
        )
        self.memory = self._worker_gauge(
            "cml_monitor_worker_memory_utilization_percent", "Memory utilisation of a worker, percent"
        )
        self.disk = self._worker_gauge(
            "cml_monitor_worker_disk_used_percent", "Disk used on the worker's CML controller, percent"
        )
        self.status_check = Gauge(
            "cml_monitor_worker_status_check_ok",
            "1 when the EC2 status check passes, 0 when it does not (impaired, initializing)",
            (*WORKER_LABELS, "check"),
            registry=self.registry,
        )
        self.info = Gauge(
            "cml_monitor_worker_info",
            "Always 1: the labels to join per-worker series on (instance id, region, CML version)",
            INFO_LABELS,
            registry=self.registry,
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
            "cml_monitor_alerts_firing",
            "Alerts currently firing, by kind and severity",
            ("kind", "severity"),
            registry=self.registry,
        )
        self.alert_firing = Gauge(
            "cml_monitor_alert_firing",
            "1 for each firing alert (like Prometheus's own ALERTS series)",
            ALERT_LABELS,
            registry=self.registry,
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
        self._checks: dict[str, set[str]] = {}  # worker id → the status checks it has a series in
        self._info: dict[str, tuple[str, ...]] = {}  # worker id → its info labels
        self._firing: set[tuple[str, ...]] = set()
        self._zero_known_labels()

    def _worker_gauge(self, name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, WORKER_LABELS, registry=self.registry)

    def _zero_known_labels(self) -> None:
        for service, operation in AWS_OPERATIONS:
            self.aws_requests.labels(service, operation)
        for channel in NOTIFICATION_CHANNELS:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(channel, result)
        for observer in OBSERVERS:
            self.observer_failures.labels(observer)
        for kind in ActionKind:
            for reason in ActionReason:
                for result in ActionResult:
                    if result is not ActionResult.PENDING:
                        self.actions.labels(kind.value, reason.value, result.value)
        for event_type, results in AWS_EVENT_RESULTS.items():
            for result in results:
                self.aws_events.labels(event_type, result)
        self.set_firing([])

    def on_action(self, action: Action) -> None:
        self.actions.labels(action.kind.value, action.reason.value, action.result.value).inc()

    def on_rejected_row(self, table: str) -> None:
        self.rejected_rows.labels(table).inc()

    def on_aws_request(self, service: str, operation: str) -> None:
        self.aws_requests.labels(service, operation).inc()

    def on_region_collected(self, region: str, at: datetime) -> None:
        """A region's last completed collection, as every replica reads it from the database."""
        self.last_collection.labels(region).set(at.timestamp())

    def set_firing(self, firing: Iterable[tuple[str | None, str | None, str]]) -> None:
        """The firing alerts as (worker id, worker name, kind): both alert gauges follow them.

        Every known (kind, severity) pair is exported, at 0 when nothing of that kind fires, so
        a query never has to tell "none firing" from "no data".
        """
        severities = alert_severities()
        counts = dict.fromkeys(severities.items(), 0)
        current: set[tuple[str, ...]] = set()
        for worker_id, worker_name, kind in firing:
            severity = severities.get(kind, "warning")
            counts[(kind, severity)] = counts.get((kind, severity), 0) + 1
            current.add((worker_id or "", worker_name or worker_id or "", kind, severity))
        for (kind, severity), count in counts.items():
            self.alerts_firing.labels(kind, severity).set(count)
        for labels in self._firing - current:
            _remove(self.alert_firing, *labels)
        for labels in current:
            self.alert_firing.labels(*labels).set(1)
        self._firing = current

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
            self.disk: None if cml is None else cml.disk_used_percent,
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
        self._update_checks(event, name)
        version = (event.cml.version if event.cml else None) or ""
        info = (worker_id, name, event.aws_instance_id, event.aws_region, version)
        old_info = self._info.get(worker_id)
        if old_info is not None and old_info != info:
            _remove(self.info, *old_info)
        self.info.labels(*info).set(1)
        self._info[worker_id] = info

    def _update_checks(self, event: WorkerMetricsCollected, name: str) -> None:
        """1 for `ok`, 0 for anything else EC2 reports; no series while there is no check."""
        checks = self._checks.setdefault(event.worker_id, set())
        running = event.status is WorkerStatus.RUNNING
        for check, status in zip(STATUS_CHECKS, (event.system_status, event.instance_status), strict=True):
            if running and status not in (None, "not-applicable"):
                self.status_check.labels(event.worker_id, name, check).set(float(status == "ok"))
                checks.add(check)
            elif check in checks:
                checks.discard(check)
                _remove(self.status_check, event.worker_id, name, check)

    def forget(self, worker_id: str) -> None:
        """Drop a removed worker's series."""
        name = self._names.pop(worker_id, None)
        series = self._series.pop(worker_id, set())
        info = self._info.pop(worker_id, None)
        if info is not None:
            _remove(self.info, *info)
        if name is None:
            return
        for gauge in series:
            _remove(gauge, worker_id, name)
        for check in self._checks.pop(worker_id, set()):
            _remove(self.status_check, worker_id, name, check)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass
