"""The worker aggregate: one CML worker (an EC2 instance) and what we last learnt about it.

Pure Python with no I/O: state changes go through methods that record domain events, so the
monitoring loop can tell observers what changed without comparing snapshots itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime

from .events import (
    WorkerEvent,
    WorkerRegistered,
    WorkerStatusChanged,
    WorkerTelemetryUpdated,
    WorkerTerminated,
)
from .status import WorkerStatus, map_ec2_state_to_status


@dataclass(slots=True)
class Worker:
    id: str
    name: str
    aws_region: str
    aws_instance_id: str
    created_at: datetime
    updated_at: datetime
    cml_url: str | None = None
    status: WorkerStatus = WorkerStatus.UNKNOWN
    ec2_instance_state: str | None = None
    ec2_system_status_check: str | None = None
    ec2_instance_status_check: str | None = None
    cpu_utilization: float | None = None
    memory_utilization: float | None = None
    active_labs_count: int = 0
    last_activity_at: datetime | None = None
    last_collected_at: datetime | None = None
    status_changed_at: datetime | None = None
    cpu_threshold: float | None = None
    memory_threshold: float | None = None
    stop_requested_at: datetime | None = None
    _events: list[WorkerEvent] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def register(
        cls,
        *,
        name: str,
        aws_region: str,
        aws_instance_id: str,
        now: datetime,
        cml_url: str | None = None,
        worker_id: str | None = None,
    ) -> Worker:
        worker = cls(
            id=worker_id or str(uuid.uuid4()),
            name=name,
            aws_region=aws_region,
            aws_instance_id=aws_instance_id,
            cml_url=cml_url,
            created_at=now,
            updated_at=now,
        )
        worker._events.append(WorkerRegistered(worker.id, now, aws_region, aws_instance_id))
        return worker

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The persisted fields, in declaration order (the private event list excluded)."""
        return tuple(f.name for f in fields(cls) if not f.name.startswith("_"))

    def to_record(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.field_names()}

    @property
    def is_terminated(self) -> bool:
        return self.status is WorkerStatus.TERMINATED

    def update_ec2_state(
        self,
        *,
        instance_state: str | None,
        system_status: str | None,
        instance_status: str | None,
        now: datetime,
    ) -> WorkerStatus:
        """Apply what EC2 reported; returns the previous status."""
        previous = self.status
        self.ec2_instance_state = instance_state
        self.ec2_system_status_check = system_status
        self.ec2_instance_status_check = instance_status
        new_status = map_ec2_state_to_status(instance_state)
        if new_status is not previous:
            self.status = new_status
            self.status_changed_at = now
            self._events.append(WorkerStatusChanged(self.id, now, previous, new_status))
            if new_status is WorkerStatus.TERMINATED:
                self._events.append(WorkerTerminated(self.id, now))
        self.updated_at = now
        return previous

    def update_telemetry(
        self,
        *,
        cpu_utilization: float | None,
        memory_utilization: float | None,
        active_labs_count: int | None,
        now: datetime,
    ) -> None:
        """Record a collection. `None` means "no datapoints"; a labs count of None keeps the last."""
        self.cpu_utilization = cpu_utilization
        self.memory_utilization = memory_utilization
        if active_labs_count is not None:
            self.active_labs_count = active_labs_count
        self.last_collected_at = now
        if self.status is WorkerStatus.RUNNING:
            self.last_activity_at = now
        self.updated_at = now
        self._events.append(
            WorkerTelemetryUpdated(self.id, now, cpu_utilization, memory_utilization, self.active_labs_count)
        )

    EDITABLE = ("name", "cml_url", "cpu_threshold", "memory_threshold")

    def edit(self, *, now: datetime, **changes: object) -> None:
        """Change what an operator may change (name, controller URL, threshold overrides)."""
        unknown = set(changes) - set(self.EDITABLE)
        if unknown:
            raise ValueError(f"cannot edit {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, value)
        self.updated_at = now

    def pull_events(self) -> list[WorkerEvent]:
        """Hand over and forget the events raised since the last call."""
        events, self._events = self._events, []
        return events
