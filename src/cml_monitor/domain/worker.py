"""The worker aggregate: one CML worker (an EC2 instance) and what we last learnt about it.

Pure Python with no I/O: what a collection learnt is applied through methods, so the rules
(a status change stamps `status_changed_at`, a labs count of `None` keeps the last) live here
and not in whoever reads EC2.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from .cml import CmlStatus, ControllerReading
from .idle import IdleFacts, IdlePolicy, IdleState, next_idle_state
from .scheduled_events import ScheduledEvent
from .status import WorkerStatus, map_ec2_state_to_status
from .times import to_iso

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def looks_like_id(value: str) -> bool:
    """Ids we hand out (workers, alerts, silences) are lowercase UUIDs; nothing else can be ours."""
    return bool(_UUID.match(value))


@dataclass(frozen=True, slots=True)
class WorkerRef:
    """Which worker, as notifications and alerts name it (no state, just its identity)."""

    id: str
    name: str
    aws_instance_id: str
    aws_region: str


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
    cml: CmlStatus | None = None
    ec2_scheduled_events: tuple[ScheduledEvent, ...] = ()
    auto_pause: bool = True
    idle: IdleState = field(default_factory=IdleState)
    impaired_samples: int = 0  # consecutive collections with a status check impaired
    metrics_source: str | None = None  # where CPU and memory came from: controller, cloudwatch, None
    discovered_at: datetime | None = None  # registered by tag discovery, which may forget it

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
        return cls(
            id=worker_id or str(uuid.uuid4()),
            name=name,
            aws_region=aws_region,
            aws_instance_id=aws_instance_id,
            cml_url=cml_url,
            created_at=now,
            updated_at=now,
        )

    def to_record(self) -> dict[str, object]:
        """The fields as a database row: the controller status and scheduled events as JSON."""
        record = {name: getattr(self, name) for name in _FIELD_NAMES}
        record["status"] = self.status.value
        record["cml"] = None if self.cml is None else self.cml.to_json()
        record["ec2_scheduled_events"] = [e.to_json() for e in self.ec2_scheduled_events]
        record["idle"] = self.idle.to_json()
        return record

    def to_json(self) -> dict[str, Any]:
        """The worker as the API shows it, JSON-ready: `GET /api/workers/{id}` without
        `monitoring` (when it is collected next is the schedule's to say; `worker_json` adds it).

        Written out rather than `to_record()` with a type test per value (which cost a sixth
        more): it runs for every worker of a listed page and of each live event. A test checks
        that it names every field, in the order of the fields.
        """
        cml = self.cml
        return {
            "id": self.id,
            "name": self.name,
            "aws_region": self.aws_region,
            "aws_instance_id": self.aws_instance_id,
            "created_at": to_iso(self.created_at),
            "updated_at": to_iso(self.updated_at),
            "cml_url": self.cml_url,
            "status": self.status.value,
            "ec2_instance_state": self.ec2_instance_state,
            "ec2_system_status_check": self.ec2_system_status_check,
            "ec2_instance_status_check": self.ec2_instance_status_check,
            "cpu_utilization": self.cpu_utilization,
            "memory_utilization": self.memory_utilization,
            "active_labs_count": self.active_labs_count,
            "last_activity_at": to_iso(self.last_activity_at),
            "last_collected_at": to_iso(self.last_collected_at),
            "status_changed_at": to_iso(self.status_changed_at),
            "cpu_threshold": self.cpu_threshold,
            "memory_threshold": self.memory_threshold,
            "stop_requested_at": to_iso(self.stop_requested_at),
            "cml": None if cml is None else cml.to_json(),
            "ec2_scheduled_events": [e.to_json() for e in self.ec2_scheduled_events],
            "auto_pause": self.auto_pause,
            "idle": self.idle.to_json(),
            "impaired_samples": self.impaired_samples,
            "metrics_source": self.metrics_source,
            "discovered_at": to_iso(self.discovered_at),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Worker:
        data = {name: record[name] for name in _FIELD_NAMES}
        data["status"] = WorkerStatus(data["status"])
        data["cml"] = None if data["cml"] is None else CmlStatus.from_json(data["cml"])
        data["ec2_scheduled_events"] = tuple(
            ScheduledEvent.from_json(e) for e in data["ec2_scheduled_events"] or ()
        )
        data["idle"] = IdleState.from_json(data["idle"])
        data["auto_pause"] = True if data["auto_pause"] is None else bool(data["auto_pause"])
        data["impaired_samples"] = data["impaired_samples"] or 0
        return cls(**data)

    @property
    def ref(self) -> WorkerRef:
        return WorkerRef(self.id, self.name, self.aws_instance_id, self.aws_region)

    @property
    def is_terminated(self) -> bool:
        return self.status is WorkerStatus.TERMINATED

    def has_problem(self, alerting: bool) -> bool:
        """Whether the worker needs a look: an alert fires, its state is one nobody asked for
        (unknown, or shutting down), or its controller is unreachable, unhealthy or not ready.

        A stopped worker is not a problem by itself (stopping workers saves money); one that
        stopped without being asked has an `unexpected_stop` alert, which counts.
        """
        if alerting or self.status in (WorkerStatus.UNKNOWN, WorkerStatus.SHUTTING_DOWN):
            return True
        cml = self.cml
        if self.status is not WorkerStatus.RUNNING or not self.cml_url or cml is None:
            return False
        return cml.reachable is False or cml.healthy is False or cml.ready is False

    def update_ec2_state(
        self,
        *,
        instance_state: str | None,
        system_status: str | None,
        instance_status: str | None,
        now: datetime,
        scheduled_events: Sequence[ScheduledEvent] = (),
    ) -> WorkerStatus:
        """Apply what EC2 reported; returns the previous status."""
        previous = self.status
        self.ec2_instance_state = instance_state
        self.ec2_system_status_check = system_status
        self.ec2_instance_status_check = instance_status
        self.ec2_scheduled_events = tuple(e for e in scheduled_events if e.pending)
        impaired = "impaired" in (system_status, instance_status)
        self.impaired_samples = self.impaired_samples + 1 if impaired else 0
        new_status = map_ec2_state_to_status(instance_state)
        if new_status is not previous:
            self.status = new_status
            self.status_changed_at = now
        self.updated_at = now
        return previous

    def update_telemetry(
        self,
        *,
        cpu_utilization: float | None,
        memory_utilization: float | None,
        active_labs_count: int | None,
        now: datetime,
        metrics_source: str | None = None,
    ) -> None:
        """Record a collection. `None` means "no datapoints"; a labs count of None keeps the last.
        `metrics_source` says where the figures came from (None when there are none)."""
        self.cpu_utilization = cpu_utilization
        self.memory_utilization = memory_utilization
        has_figures = cpu_utilization is not None or memory_utilization is not None
        self.metrics_source = metrics_source if has_figures else None
        if active_labs_count is not None:
            self.active_labs_count = active_labs_count
        self.last_collected_at = now
        if self.status is WorkerStatus.RUNNING:
            self.last_activity_at = now
        self.updated_at = now

    def update_cml(self, reading: ControllerReading, now: datetime) -> None:
        """Apply one cycle's read of the controller; what it could not read stays as it was.

        The started-labs count is the seed's `active_labs_count`, so both say the same.
        """
        self.cml = (self.cml or CmlStatus()).apply(reading, now)
        if "labs_started" in reading.values and self.cml.labs_started is not None:
            self.active_labs_count = self.cml.labs_started
        self.updated_at = now

    def controller_stopped(self, now: datetime) -> None:
        """The instance is not running: its controller answers nothing and runs no lab."""
        if self.cml is not None:
            self.cml = replace(self.cml, reachable=None, labs_started=0, running_nodes=0, errors=())
        self.updated_at = now

    def update_idle(self, now: datetime, previous_collection: datetime | None, policy: IdlePolicy) -> None:
        """Decide whether the worker is idle now, and account the time since the last look."""
        cml = self.cml
        running = self.status is WorkerStatus.RUNNING
        facts = IdleFacts(
            running=running,
            has_controller=bool(self.cml_url),
            controller_reachable=bool(cml and cml.reachable),
            labs_started=cml.labs_started if cml else None,
            cpu_utilization=self.cpu_utilization,
            last_user_activity_at=cml.last_user_activity_at if cml else None,
            started_at=self.status_changed_at if running else None,
            monitored_since=self.created_at,
        )
        self.idle = next_idle_state(
            self.idle,
            facts,
            now=now,
            previous_collection=previous_collection,
            policy=policy,
            auto_pause=self.auto_pause,
        )

    EDITABLE = ("name", "cml_url", "cpu_threshold", "memory_threshold", "auto_pause")

    def edit(self, *, now: datetime, **changes: object) -> None:
        """Change what an operator may change (name, controller URL, threshold overrides)."""
        unknown = set(changes) - set(self.EDITABLE)
        if unknown:
            raise ValueError(f"cannot edit {sorted(unknown)}")
        if "cml_url" in changes and changes["cml_url"] != self.cml_url:
            self.cml = None  # what we knew was about another controller
        for name, value in changes.items():
            setattr(self, name, value)
        self.updated_at = now


def worker_json(worker: Worker, next_run_at: datetime | None) -> dict[str, Any]:
    """A worker as the API answers it, JSON-ready: `Worker.to_json()` and its `monitoring`.

    The one builder of that shape: `GET /api/workers` (each item) and `/api/workers/{id}`, and
    the `worker` of each live `metrics` event (`live_events.EventHub`), so the dashboard reads
    one shape whether it asked or was told. `WorkerOut`, which documents it in OpenAPI, is
    checked equal to it by a test.
    """
    data = worker.to_json()
    data["monitoring"] = {"active": next_run_at is not None, "next_run_at": to_iso(next_run_at)}
    return data


# Read on every row the API lists: computed once, not by `dataclasses.fields` each time.
_FIELD_NAMES = tuple(f.name for f in fields(Worker))
