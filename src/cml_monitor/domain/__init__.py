"""The domain: workers, their status and what happens to them. Imports nothing of ours."""

from .events import (
    WorkerEvent,
    WorkerRegistered,
    WorkerStatusChanged,
    WorkerTelemetryUpdated,
    WorkerTerminated,
)
from .status import WorkerStatus, map_ec2_state_to_status
from .worker import Worker

__all__ = [
    "Worker",
    "WorkerEvent",
    "WorkerRegistered",
    "WorkerStatus",
    "WorkerStatusChanged",
    "WorkerTelemetryUpdated",
    "WorkerTerminated",
    "map_ec2_state_to_status",
]
