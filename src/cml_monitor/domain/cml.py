"""What we know of a worker's CML controller: readiness, health, licence, capacity, labs.

A `ControllerReading` is what one cycle managed to read; `CmlStatus` is what the worker keeps.
They are separate because a controller can answer one endpoint and fail another: a reading
carries only the fields of the endpoints that answered usably, and `CmlStatus.apply` keeps the
last known value of everything else, so half a document never erases what was known.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from .times import believable, to_iso

# The registration and authorization states a controller in order reports (CML 2.x licensing).
REGISTRATION_OK = "COMPLETED"
AUTHORIZATION_OK = "IN_COMPLIANCE"
ADMITTED = "READY"


@dataclass(frozen=True, slots=True)
class ComputeHealth:
    """One compute host of the cluster (the controller host is a compute too)."""

    hostname: str | None
    healthy: bool | None
    admission_state: str | None

    def to_json(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "healthy": self.healthy, "admission_state": self.admission_state}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComputeHealth:
        return cls(data.get("hostname"), data.get("healthy"), data.get("admission_state"))


@dataclass(frozen=True, slots=True)
class ControllerReading:
    """One cycle's read of a controller.

    `values` holds the `CmlStatus` fields of the endpoints that answered usably (a field the
    controller did not give is there as `None`); `errors` names the endpoints that did not;
    `reachable` is False when nothing usable came back at all.
    """

    reachable: bool
    values: dict[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StartedLab:
    """A lab the controller reports `STARTED` (`GET labs/{id}`): what a person about to stop
    or reboot the worker needs to see (whose work they would interrupt)."""

    id: str
    title: str | None
    owner: str | None  # `owner_username`

    def to_json(self) -> dict[str, str | None]:
        return {"id": self.id, "title": self.title, "owner": self.owner}


@dataclass(frozen=True, slots=True)
class CmlStatus:
    reachable: bool | None = None
    version: str | None = None
    ready: bool | None = None
    healthy: bool | None = None
    licensed: bool | None = None
    license_registration: str | None = None
    license_authorization: str | None = None
    license_expires_at: datetime | None = None
    labs_started: int | None = None
    labs_total: int | None = None
    running_nodes: int | None = None
    total_nodes: int | None = None
    cpu_percent: float | None = None
    memory_used_percent: float | None = None
    disk_used_percent: float | None = None
    allocated_cpus: int | None = None
    cpu_count: int | None = None
    computes: tuple[ComputeHealth, ...] | None = None
    collected_at: datetime | None = None
    license_checked_at: datetime | None = None
    last_user_activity_at: datetime | None = None
    activity_checked_at: datetime | None = None
    errors: tuple[str, ...] = ()

    def apply(self, reading: ControllerReading, now: datetime) -> CmlStatus:
        """The status after this reading: read fields replaced, the rest kept as they were."""
        changes: dict[str, Any] = {name: value for name, value in reading.values.items() if name in _NAMES}
        if "license_registration" in reading.values:
            changes["license_checked_at"] = now
        if "last_user_activity_at" in reading.values:
            changes["activity_checked_at"] = now
            # No event (or only events dated in the future): keep what we knew, if believable.
            latest = believable(reading.values["last_user_activity_at"], now)
            changes["last_user_activity_at"] = latest or believable(self.last_user_activity_at, now)
        if reading.reachable:
            changes["collected_at"] = now
        return replace(self, **changes, reachable=reading.reachable, errors=reading.errors)

    def licensing_due(self, now: datetime, interval_seconds: float) -> bool:
        """Licensing is read rarely (it changes on the scale of days)."""
        return _due(self.license_checked_at, now, interval_seconds)

    def activity_due(self, now: datetime, interval_seconds: float) -> bool:
        """Users' activity is the controller's whole event history: read it sparingly."""
        return _due(self.activity_checked_at, now, interval_seconds)

    @property
    def health_problem(self) -> str | None:
        """Why the controller is not usable, in words; None when nothing says it is not."""
        if self.ready is False:
            return "not ready (no compute can start nodes yet)"
        if self.healthy is False:
            bad = [c.hostname or "?" for c in self.computes or () if c.healthy is False]
            not_admitted = [
                f"{c.hostname or '?'} {c.admission_state}"
                for c in self.computes or ()
                if c.admission_state not in (None, ADMITTED)
            ]
            parts = [f"unhealthy computes: {', '.join(bad)}"] if bad else []
            parts += [f"not admitted: {', '.join(not_admitted)}"] if not_admitted else []
            return "; ".join(parts) or "controller reports itself unhealthy"
        failed = [e for e in self.errors if e.startswith("system_health:")]
        if failed:
            return f"health endpoint failed ({failed[0].removeprefix('system_health: ')})"
        return None

    def to_json(self) -> dict[str, Any]:
        # Written out: called for every worker with a controller several times per collection
        # (its database row, its event's JSON on the bus and on the live stream, and the
        # stream's `worker`); the loop over the fields it replaced, with a type test for each,
        # cost a third more.
        computes = self.computes
        return {
            "reachable": self.reachable,
            "version": self.version,
            "ready": self.ready,
            "healthy": self.healthy,
            "licensed": self.licensed,
            "license_registration": self.license_registration,
            "license_authorization": self.license_authorization,
            "license_expires_at": to_iso(self.license_expires_at),
            "labs_started": self.labs_started,
            "labs_total": self.labs_total,
            "running_nodes": self.running_nodes,
            "total_nodes": self.total_nodes,
            "cpu_percent": self.cpu_percent,
            "memory_used_percent": self.memory_used_percent,
            "disk_used_percent": self.disk_used_percent,
            "allocated_cpus": self.allocated_cpus,
            "cpu_count": self.cpu_count,
            "computes": None if computes is None else [c.to_json() for c in computes],
            "collected_at": to_iso(self.collected_at),
            "license_checked_at": to_iso(self.license_checked_at),
            "last_user_activity_at": to_iso(self.last_user_activity_at),
            "activity_checked_at": to_iso(self.activity_checked_at),
            "errors": list(self.errors),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CmlStatus:
        values: dict[str, Any] = {}
        for name in _NAMES:
            value = data.get(name)
            if name in _TIMES and isinstance(value, str):
                value = datetime.fromisoformat(value)
            elif name == "computes" and value is not None:
                value = tuple(ComputeHealth.from_json(c) for c in value)
            elif name == "errors":
                value = tuple(value or ())
            values[name] = value
        return cls(**values)


_NAMES = tuple(f.name for f in fields(CmlStatus))
_TIMES = frozenset(
    {
        "license_expires_at",
        "collected_at",
        "license_checked_at",
        "last_user_activity_at",
        "activity_checked_at",
    }
)


def _due(checked: datetime | None, now: datetime, interval_seconds: float) -> bool:
    return checked is None or (now - checked).total_seconds() >= interval_seconds
