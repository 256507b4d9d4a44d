"""Worker status, and how an EC2 instance state maps onto it."""

from __future__ import annotations

from enum import StrEnum


class WorkerStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


_EC2_STATE_TO_STATUS = {
    "pending": WorkerStatus.PENDING,
    "running": WorkerStatus.RUNNING,
    "stopping": WorkerStatus.STOPPING,
    "stopped": WorkerStatus.STOPPED,
    "shutting-down": WorkerStatus.SHUTTING_DOWN,
    "terminated": WorkerStatus.TERMINATED,
}


def map_ec2_state_to_status(ec2_state: str | None) -> WorkerStatus:
    """EC2 instance state name → worker status; anything EC2 may add later is `unknown`."""
    if ec2_state is None:
        return WorkerStatus.UNKNOWN
    return _EC2_STATE_TO_STATUS.get(ec2_state.strip().lower(), WorkerStatus.UNKNOWN)
