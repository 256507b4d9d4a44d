"""The domain: workers, their status, alerts and the events a collection produces. No I/O,
and nothing of ours imported: every other part may depend on it."""

from .alerts import Alert, AlertKind, AlertState, Silence
from .cml import CmlStatus, ComputeHealth, ControllerReading
from .events import EventObserver, WorkerMetricsCollected
from .history import MetricSample
from .notifications import OutboxMessage
from .scheduled_events import ScheduledEvent
from .status import WorkerStatus, map_ec2_state_to_status
from .worker import Worker, WorkerRef, looks_like_id, worker_json

__all__ = [
    "Alert",
    "AlertKind",
    "AlertState",
    "CmlStatus",
    "ComputeHealth",
    "ControllerReading",
    "EventObserver",
    "MetricSample",
    "OutboxMessage",
    "ScheduledEvent",
    "Silence",
    "Worker",
    "WorkerMetricsCollected",
    "WorkerRef",
    "WorkerStatus",
    "looks_like_id",
    "map_ec2_state_to_status",
    "worker_json",
]
