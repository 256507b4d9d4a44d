"""A point of a worker's history: what one collection saw of one worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class MetricSample:
    worker_id: str
    timestamp: datetime
    status: str
    cpu_utilization: float | None
    memory_utilization: float | None
    active_labs_count: int | None
    running_nodes: int | None = None
    disk_used_percent: float | None = None

    def to_record(self) -> dict[str, Any]:
        # Written out: one per worker per cycle, and `dataclasses.asdict` deep-copies (5x slower).
        return {
            "worker_id": self.worker_id,
            "timestamp": self.timestamp,
            "status": self.status,
            "cpu_utilization": self.cpu_utilization,
            "memory_utilization": self.memory_utilization,
            "active_labs_count": self.active_labs_count,
            "running_nodes": self.running_nodes,
            "disk_used_percent": self.disk_used_percent,
        }
