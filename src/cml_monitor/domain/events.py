"""The typed event a collection produces: what one worker looked like at one collection.

Observers (the notification handler, the alert engine, the live-event hub, the Prometheus
gauges) receive these a region at a time. `to_json()` is the shape scripts and the seed's
plain-callable observers have always received, so that contract lives next to the type.

An event also carries the few fields of its worker that its own do not say (when it was
registered, its controller URL, ...), so that it is the whole worker as this collection left it
(`to_worker`): the live stream shows that worker in the API's shape. `to_bus_json()` is what
crosses the buses (`to_json()` and those fields), so a replica behind a bus can do the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from .cml import CmlStatus
from .idle import IdleState
from .scheduled_events import ScheduledEvent
from .status import WorkerStatus
from .times import from_iso, to_iso
from .worker import Worker, WorkerRef


@dataclass(frozen=True, slots=True)
class WorkerMetricsCollected:
    """One worker, one successful collection: status, EC2 checks, usage, labs."""

    worker_id: str
    worker_name: str
    aws_instance_id: str
    aws_region: str
    status: WorkerStatus
    previous_status: WorkerStatus
    timestamp: datetime
    cpu_utilization: float | None
    memory_utilization: float | None
    instance_state: str | None
    system_status: str | None
    instance_status: str | None
    active_labs_count: int
    cpu_threshold: float | None = None
    memory_threshold: float | None = None
    cml: CmlStatus | None = None
    scheduled_events: tuple[ScheduledEvent, ...] = ()
    idle: IdleState = field(default_factory=IdleState)
    auto_pause: bool = True
    impaired_samples: int = 0
    stop_requested: bool = False
    metrics_source: str | None = None  # "controller" (system_stats), "cloudwatch", or None
    # The worker's fields that those above do not carry; with them the event is the whole worker
    # (`to_worker`). A few scalars, rather than the worker itself, so that nothing is built or
    # sent twice when nobody watches the live stream (see `live_events`). `created_at` is None
    # in an event built without them (by hand, or by a collector older than them).
    created_at: datetime | None = None
    updated_at: datetime | None = None
    cml_url: str | None = None
    last_activity_at: datetime | None = None
    status_changed_at: datetime | None = None
    stop_requested_at: datetime | None = None
    discovered_at: datetime | None = None

    @property
    def worker(self) -> WorkerRef:
        return WorkerRef(self.worker_id, self.worker_name, self.aws_instance_id, self.aws_region)

    @property
    def status_changed(self) -> bool:
        return self.status is not self.previous_status

    def to_json(self) -> dict[str, Any]:
        """The metrics event as JSON (SSE `metrics` event, seed observers), with extra keys."""
        return {
            "worker_id": self.worker_id,
            "worker_name": self.worker_name,
            "aws_instance_id": self.aws_instance_id,
            "aws_region": self.aws_region,
            "status": self.status.value,
            "previous_status": self.previous_status.value,
            "timestamp": to_iso(self.timestamp),
            "metrics": {
                "cpu_utilization": self.cpu_utilization,
                "memory_utilization": self.memory_utilization,
            },
            "metrics_source": self.metrics_source,
            "ec2": {
                "instance_state": self.instance_state,
                "system_status": self.system_status,
                "instance_status": self.instance_status,
            },
            "active_labs_count": self.active_labs_count,
            "thresholds": {"cpu": self.cpu_threshold, "memory": self.memory_threshold},
            "cml": None if self.cml is None else self.cml.to_json(),
            "ec2_scheduled_events": [e.to_json() for e in self.scheduled_events],
            "idle": self.idle.to_json(),
            "auto_pause": self.auto_pause,
            "impaired_samples": self.impaired_samples,
            "stop_requested": self.stop_requested,
        }

    def to_worker(self) -> Worker | None:
        """The worker as this collection left it (what `GET /api/workers/{id}` then answers),
        or None when the event lacks the fields only the worker has (see `created_at`)."""
        if self.created_at is None or self.updated_at is None:
            return None
        return Worker(
            id=self.worker_id,
            name=self.worker_name,
            aws_region=self.aws_region,
            aws_instance_id=self.aws_instance_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            cml_url=self.cml_url,
            status=self.status,
            ec2_instance_state=self.instance_state,
            ec2_system_status_check=self.system_status,
            ec2_instance_status_check=self.instance_status,
            cpu_utilization=self.cpu_utilization,
            memory_utilization=self.memory_utilization,
            active_labs_count=self.active_labs_count,
            last_activity_at=self.last_activity_at,
            last_collected_at=self.timestamp,
            status_changed_at=self.status_changed_at,
            cpu_threshold=self.cpu_threshold,
            memory_threshold=self.memory_threshold,
            stop_requested_at=self.stop_requested_at,
            cml=self.cml,
            ec2_scheduled_events=self.scheduled_events,
            auto_pause=self.auto_pause,
            idle=self.idle,
            impaired_samples=self.impaired_samples,
            metrics_source=self.metrics_source,
            discovered_at=self.discovered_at,
        )

    def to_bus_json(self) -> dict[str, Any]:
        """What crosses the event buses (Redis, `serve`'s local channel): `to_json()` and, under
        `worker_fields`, the worker's fields it lacks, so the replica across can `to_worker()`."""
        data = self.to_json()
        if self.created_at is not None:
            data["worker_fields"] = {
                "created_at": to_iso(self.created_at),
                "updated_at": to_iso(self.updated_at),
                "cml_url": self.cml_url,
                "last_activity_at": to_iso(self.last_activity_at),
                "status_changed_at": to_iso(self.status_changed_at),
                "stop_requested_at": to_iso(self.stop_requested_at),
                "discovered_at": to_iso(self.discovered_at),
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerMetricsCollected:
        """The inverse of `to_json` and of `to_bus_json` (events crossing replicas travel as JSON)."""
        metrics, ec2 = data.get("metrics") or {}, data.get("ec2") or {}
        thresholds, cml = data.get("thresholds") or {}, data.get("cml")
        more = data.get("worker_fields") or {}
        return cls(
            worker_id=data["worker_id"],
            worker_name=data["worker_name"],
            aws_instance_id=data["aws_instance_id"],
            aws_region=data["aws_region"],
            status=WorkerStatus(data["status"]),
            previous_status=WorkerStatus(data["previous_status"]),
            timestamp=datetime.fromisoformat(data["timestamp"]),
            cpu_utilization=metrics.get("cpu_utilization"),
            memory_utilization=metrics.get("memory_utilization"),
            instance_state=ec2.get("instance_state"),
            system_status=ec2.get("system_status"),
            instance_status=ec2.get("instance_status"),
            active_labs_count=int(data.get("active_labs_count") or 0),
            cpu_threshold=thresholds.get("cpu"),
            memory_threshold=thresholds.get("memory"),
            cml=None if cml is None else CmlStatus.from_json(cml),
            scheduled_events=tuple(
                ScheduledEvent.from_json(e) for e in data.get("ec2_scheduled_events") or ()
            ),
            idle=IdleState.from_json(data.get("idle")),
            auto_pause=bool(data.get("auto_pause", True)),
            impaired_samples=int(data.get("impaired_samples") or 0),
            stop_requested=bool(data.get("stop_requested")),
            metrics_source=data.get("metrics_source"),
            created_at=from_iso(more.get("created_at")),
            updated_at=from_iso(more.get("updated_at")),
            cml_url=more.get("cml_url"),
            last_activity_at=from_iso(more.get("last_activity_at")),
            status_changed_at=from_iso(more.get("status_changed_at")),
            stop_requested_at=from_iso(more.get("stop_requested_at")),
            discovered_at=from_iso(more.get("discovered_at")),
        )


@runtime_checkable
class EventObserver(Protocol):
    """Anything given each region's batch of events (alert engine, gauges, SSE hub, event bus)."""

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Take one batch (never empty); may raise or be slow: the publisher isolates and times it."""
        ...
