"""A point of a worker's history: what one collection saw of one worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
        return asdict(self)
