"""Alerts and silences as values: what the alert engine decides and the store keeps.

They live in the domain because two parts share them: `alerts` (which changes them) and
`storage` (which persists them). Neither may import the other, so the vocabulary sits below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AlertKind(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"
    STATUS_CHECK = "status_check"
    UNEXPECTED_STOP = "unexpected_stop"
    UNREACHABLE = "unreachable"
    CML_UNREACHABLE = "cml_unreachable"
    CML_UNHEALTHY = "cml_unhealthy"
    LICENSE = "license"
    DISK = "disk"
    SCHEDULED_EVENT = "scheduled_event"
    IDLE = "idle"
    COLLECTION_FAILING = "collection_failing"  # fleet-level: a region, not a worker


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


SEVERITY = {
    AlertKind.CPU: "warning",
    AlertKind.MEMORY: "warning",
    AlertKind.STATUS_CHECK: "critical",
    AlertKind.UNEXPECTED_STOP: "critical",
    AlertKind.UNREACHABLE: "critical",
    AlertKind.CML_UNREACHABLE: "error",
    AlertKind.CML_UNHEALTHY: "error",
    AlertKind.LICENSE: "warning",
    AlertKind.DISK: "warning",
    AlertKind.SCHEDULED_EVENT: "warning",
    AlertKind.IDLE: "info",
    AlertKind.COLLECTION_FAILING: "critical",
}

# Kinds about the monitor's view of a region rather than about one worker.
FLEET_KINDS = frozenset({AlertKind.COLLECTION_FAILING})


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    worker_id: str | None  # None for a fleet-level alert (then `region` says which region)
    kind: AlertKind
    state: AlertState
    value: float | None
    threshold: float | None
    violations: int
    started_at: datetime
    updated_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_comment: str | None = None
    acknowledged_by: str | None = None  # the role or token subject that acknowledged
    detail: str | None = None  # what the numbers do not say: which event, which compute
    region: str | None = None  # set for fleet-level alerts

    @property
    def severity(self) -> str:
        return SEVERITY[self.kind]


@dataclass(frozen=True, slots=True)
class Silence:
    """An operator's "I know, don't tell me" for a worker, a kind, or both, until a time."""

    id: str
    worker_id: str | None
    kind: str | None
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, worker_id: str | None, kind: str) -> bool:
        return (self.worker_id is None or self.worker_id == worker_id) and (
            self.kind is None or self.kind == kind
        )
