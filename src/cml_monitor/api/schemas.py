"""Request and response bodies of the REST API: the JSON contract scripts rely on."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from cml_monitor.domain import Worker, WorkerStatus

from .validation import (
    check_instance_id,
    check_name,
    check_region,
    check_timestamp,
    check_url,
    reject_lone_surrogates,
)

InstanceId = Annotated[str, AfterValidator(check_instance_id)]
Region = Annotated[str, AfterValidator(check_region)]
Name = Annotated[str, AfterValidator(check_name)]
Url = Annotated[str, AfterValidator(check_url)]
# Strict: `true` is not 1.0; finite only: NaN, Infinity and 1e309 (which JSON parsers read as
# infinity) are refused rather than stored.
Percent = Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)]
Timestamp = Annotated[datetime, AfterValidator(check_timestamp)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _valid_text(cls, value: Any) -> Any:
        return reject_lone_surrogates(value)


class WorkerCreate(_Strict):
    name: Name
    aws_region: Region
    aws_instance_id: InstanceId
    cml_url: Url | None = None


class WorkerUpdate(_Strict):
    """Only the fields present are changed; `null` clears `cml_url` or a threshold override."""

    name: Name | None = None
    cml_url: Url | None = None
    cpu_threshold: Percent | None = None
    memory_threshold: Percent | None = None
    auto_pause: bool | None = None


class ImportRequest(_Strict):
    aws_region: Region
    tags: dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]] = (
        Field(min_length=1, max_length=50)
    )
    preview: bool = False  # list what would be registered, register nothing


class Monitoring(BaseModel):
    active: bool
    next_run_at: datetime | None


class ComputeOut(BaseModel):
    hostname: str | None
    healthy: bool | None
    admission_state: str | None


class CmlOut(BaseModel):
    """The controller as last read; a field it did not give (or we could not read) is null."""

    reachable: bool | None
    version: str | None
    ready: bool | None
    healthy: bool | None
    licensed: bool | None
    license_registration: str | None
    license_authorization: str | None
    license_expires_at: datetime | None
    labs_started: int | None
    labs_total: int | None
    running_nodes: int | None
    total_nodes: int | None
    cpu_percent: float | None
    memory_used_percent: float | None
    disk_used_percent: float | None
    allocated_cpus: int | None
    cpu_count: int | None
    computes: list[ComputeOut] | None
    collected_at: datetime | None
    license_checked_at: datetime | None
    last_user_activity_at: datetime | None
    activity_checked_at: datetime | None
    errors: list[str] = Field(description="the endpoints that did not answer usably in the last cycle")


class ScheduledEventOut(BaseModel):
    code: str
    description: str | None
    not_before: datetime | None
    not_after: datetime | None


class IdleOut(BaseModel):
    """Whether the worker is idle, when it will be auto-paused, and what it has cost."""

    idle: bool
    idle_since: datetime | None
    last_user_activity_at: datetime | None
    pause_at: datetime | None
    snoozed_until: datetime | None
    paused_by_us: bool
    running_seconds: float
    idle_seconds: float
    paused_seconds: float
    notice_id: str | None = None  # the CML system notice telling users of the coming pause


class WorkerOut(BaseModel):
    id: str
    name: str
    aws_region: str
    aws_instance_id: str
    cml_url: str | None
    status: WorkerStatus
    ec2_instance_state: str | None
    ec2_system_status_check: str | None
    ec2_instance_status_check: str | None
    cpu_utilization: float | None
    memory_utilization: float | None
    active_labs_count: int
    last_activity_at: datetime | None
    last_collected_at: datetime | None
    status_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    cpu_threshold: float | None
    memory_threshold: float | None
    stop_requested_at: datetime | None
    cml: CmlOut | None
    ec2_scheduled_events: list[ScheduledEventOut]
    auto_pause: bool
    idle: IdleOut
    impaired_samples: int
    metrics_source: Literal["controller", "cloudwatch"] | None = None
    discovered_at: datetime | None = None
    monitoring: Monitoring

    @classmethod
    def from_worker(cls, worker: Worker, next_run_at: datetime | None) -> WorkerOut:
        return cls(
            **worker.to_record(),
            monitoring=Monitoring(active=next_run_at is not None, next_run_at=next_run_at),
        )


class WorkerList(BaseModel):
    items: list[WorkerOut]
    total: int


class SkippedInstance(BaseModel):
    aws_instance_id: str
    reason: str


class PreviewInstance(BaseModel):
    aws_instance_id: str
    name: str
    state: str | None


class ImportResult(BaseModel):
    imported: list[WorkerOut]
    skipped: list[SkippedInstance]
    would_import: list[PreviewInstance] = []  # with `preview`: what an import would register


class MetricPoint(BaseModel):
    timestamp: datetime
    status: str | None
    cpu_utilization: float | None
    memory_utilization: float | None
    active_labs_count: float | None
    running_nodes: float | None = None
    disk_used_percent: float | None = None
    cpu_max: float | None = None
    memory_max: float | None = None


class MetricList(BaseModel):
    items: list[MetricPoint]
    step: int = Field(description="bucket width in seconds; 0 = every sample")
    source: Literal["raw", "hourly", "hourly+raw"] = Field(
        description="`hourly+raw`: hourly averages, then raw samples averaged alike for the hours"
        " not rolled up yet"
    )


class MonitoringJob(BaseModel):
    worker_id: str
    job_id: str
    next_run_at: datetime | None


class MonitoringJobList(BaseModel):
    items: list[MonitoringJob]
    stale: bool = False  # the job store could not be read: the next runs shown may be old


class RegionCollectionOut(BaseModel):
    region: str
    last_collected_at: datetime | None
    last_attempt_at: datetime | None
    consecutive_failures: int
    last_error: str | None
    stale: bool
    next_run_at: datetime | None


class CollectionStatusOut(BaseModel):
    """How fresh the fleet's figures are: what the dashboard's banner shows."""

    enabled: bool
    interval_seconds: int
    check: str  # the same words as `/ready`'s `collection` check
    stale: list[str]
    regions: list[RegionCollectionOut]


AlertKindName = Literal[
    "cpu",
    "memory",
    "status_check",
    "unexpected_stop",
    "unreachable",
    "cml_unreachable",
    "cml_unhealthy",
    "license",
    "disk",
    "scheduled_event",
    "idle",
    "collection_failing",
]


class AlertOut(BaseModel):
    id: str
    worker_id: str | None  # None for a fleet-level alert (`collection_failing`)
    region: str | None = None
    kind: AlertKindName
    state: Literal["pending", "firing", "resolved"]
    severity: str
    value: float | None
    threshold: float | None
    detail: str | None
    started_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    last_notified_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_comment: str | None
    acknowledged_by: str | None = None


class AlertList(BaseModel):
    items: list[AlertOut]


class AckRequest(_Strict):
    comment: Annotated[str, Field(max_length=1024)] | None = None


class SilenceCreate(_Strict):
    worker_id: Annotated[str, Field(max_length=36)] | None = None
    kind: AlertKindName | None = None
    starts_at: Timestamp | None = None
    ends_at: Timestamp
    comment: Annotated[str, Field(min_length=1, max_length=1024)]


class SilenceOut(BaseModel):
    id: str
    worker_id: str | None
    kind: str | None
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_at: datetime
    active: bool


class SilenceList(BaseModel):
    items: list[SilenceOut]


class NotificationOut(BaseModel):
    id: str
    alert_id: str | None
    worker_id: str | None
    event_type: str
    channel: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class NotificationList(BaseModel):
    items: list[NotificationOut]


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    worker_id: str


class ActionOut(BaseModel):
    id: str
    worker_id: str
    kind: Literal["stop", "start", "reboot"]
    reason: Literal["idle", "status_check_impaired", "manual"]
    actor: str
    dry_run: bool
    requested_at: datetime
    finished_at: datetime | None
    result: Literal["pending", "ok", "failed", "dry_run", "skipped"]
    detail: str | None


class ActionRequest(_Strict):
    """Why a person stops, starts or reboots a worker, and whether to go ahead over started labs."""

    reason: Annotated[str, Field(max_length=300)] | None = None
    force: Annotated[bool, Field(strict=True)] = False


class StartedLabOut(BaseModel):
    id: str
    title: str | None
    owner: str | None


class StartedLabList(BaseModel):
    """The worker's started labs as its controller reports them now; `error` says why they
    could not be read (then `items` is empty and says nothing)."""

    items: list[StartedLabOut]
    error: str | None


class ActionList(BaseModel):
    items: list[ActionOut]


class FleetPolicy(BaseModel):
    """The fleet-wide settings a dashboard draws and explains (read-only: they come from the
    environment)."""

    cpu_threshold: float
    memory_threshold: float
    disk_threshold: float
    auto_pause_enabled: bool
    auto_pause_dry_run: bool
    remediation_enabled: bool


class FleetSummaryOut(BaseModel):
    workers: int
    by_status: dict[str, int]
    idle: int = Field(description="running workers idle now")
    running_hours: float
    idle_hours: float = Field(description="hours workers ran idle")
    paused_hours: float = Field(description="hours workers stayed stopped after an auto-pause")
    policy: FleetPolicy
