"""Domain events: what happened to a worker, raised by the aggregate and read by the monitor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .status import WorkerStatus


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    worker_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerRegistered(WorkerEvent):
    aws_region: str
    aws_instance_id: str


@dataclass(frozen=True, slots=True)
class WorkerStatusChanged(WorkerEvent):
    previous_status: WorkerStatus
    status: WorkerStatus


@dataclass(frozen=True, slots=True)
class WorkerTelemetryUpdated(WorkerEvent):
    cpu_utilization: float | None
    memory_utilization: float | None
    active_labs_count: int


@dataclass(frozen=True, slots=True)
class WorkerTerminated(WorkerEvent):
    pass
