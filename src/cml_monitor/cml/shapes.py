"""From the CML controller's JSON documents to `CmlStatus` fields, refusing what is not that shape.

Shapes are those of the CML 2.9 API (its OpenAPI document: `SystemInformation`, `SystemHealth`,
`SystemStats`, `LicensingStatus`; the `virl2-client` library reads the same). Each function
takes one response body and returns the fields it determines, or raises `ShapeError` when the
body is not what that endpoint returns, so a garbled answer changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cml_monitor.domain.cml import ADMITTED, ComputeHealth

RUNNING_LAB_STATE = "STARTED"
# Telemetry categories that mean somebody used the controller (CML's TelemetryEventCategory).
ACTIVITY_CATEGORIES = frozenset(
    {
        "start_lab",
        "stop_lab",
        "wipe_lab",
        "import_lab",
        "export_lab",
        "start_node",
        "stop_node",
        "queue_node",
        "boot_node",
        "wipe_node",
        "user_activity",
    }
)


class ShapeError(ValueError):
    """A document that is not what the endpoint returns."""


def describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ShapeError(f"{what} is {describe(body)}, not an object")
    return body


def _bool(value: Any, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ShapeError(f"{what} is {describe(value)}, not a boolean")


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(f"{what} is {describe(value)}, not a number")
    return float(value)


def _percent(used: Any, total: Any, what: str) -> float | None:
    used_value, total_value = _number(used, f"{what}.used"), _number(total, f"{what}.total")
    if used_value is None or not total_value:
        return None
    return round(100.0 * used_value / total_value, 2)


def system_information(body: Any) -> dict[str, Any]:
    info = _object(body, "system_information")
    version = info.get("version")
    if not isinstance(version, str):
        raise ShapeError(f"system_information.version is {describe(version)}")
    return {"version": version, "ready": _bool(info.get("ready"), "system_information.ready")}


def system_health(body: Any) -> dict[str, Any]:
    """Healthy: the system, the controller and every compute valid, every compute admitted."""
    health = _object(body, "system_health")
    computes_doc = _object(health.get("computes", {}), "system_health.computes")
    computes = []
    for compute_id, doc in computes_doc.items():
        compute = _object(doc, f"compute {compute_id}")
        admission = compute.get("admission_state")
        if admission is not None and not isinstance(admission, str):
            raise ShapeError(f"compute {compute_id} admission_state is {describe(admission)}")
        valid = _bool(compute.get("valid"), f"compute {compute_id} valid")
        computes.append(
            ComputeHealth(
                hostname=compute.get("hostname") if isinstance(compute.get("hostname"), str) else None,
                healthy=None if valid is None else valid and admission in (None, ADMITTED),
                admission_state=admission,
            )
        )
    controller = _object(health.get("controller", {}), "system_health.controller")
    flags = [
        _bool(health.get("valid"), "system_health.valid"),
        _bool(controller.get("valid"), "system_health.controller.valid"),
        *(c.healthy for c in computes),
    ]
    healthy = False if False in flags else (None if all(f is None for f in flags) else True)
    return {
        "healthy": healthy,
        "licensed": _bool(health.get("is_licensed"), "system_health.is_licensed"),
        "computes": tuple(sorted(computes, key=lambda c: c.hostname or "")),
    }


def system_stats(body: Any) -> dict[str, Any]:
    """Cluster-wide CPU and memory, the controller's disk, node counts summed over computes.

    A count is a sum only when every compute gave it: the spec lets `dominfo` counts be null,
    and a partial sum would look like a count that did not move when a lab started.
    """
    stats = _object(body, "system_stats")
    totals = _object(stats.get("all", {}), "system_stats.all")
    cpu = _object(totals.get("cpu", {}), "system_stats.all.cpu")
    memory = _object(totals.get("memory", {}), "system_stats.all.memory")
    disk_doc = _object(stats.get("controller", {}), "system_stats.controller").get("disk")
    disk = _object(disk_doc if disk_doc is not None else totals.get("disk", {}), "system_stats disk")
    names = ("running_nodes", "total_nodes", "allocated_cpus")
    computes = _object(stats.get("computes", {}), "system_stats.computes")
    sums: dict[str, int | None] = dict.fromkeys(names, 0 if computes else None)
    for compute_id, doc in computes.items():
        compute_stats = _object(_object(doc, f"compute {compute_id}").get("stats", {}), "compute stats")
        dominfo = _object(compute_stats.get("dominfo", {}), f"compute {compute_id} dominfo")
        for name in names:
            value = _number(dominfo.get(name), f"compute {compute_id} {name}")
            total = sums[name]
            sums[name] = None if value is None or total is None else total + int(value)
    count = _number(cpu.get("count"), "system_stats.all.cpu.count")
    return {
        "cpu_percent": _number(cpu.get("percent"), "system_stats.all.cpu.percent"),
        "cpu_count": None if count is None else int(count),
        "memory_used_percent": _percent(memory.get("used"), memory.get("total"), "memory"),
        "disk_used_percent": _percent(disk.get("used"), disk.get("total"), "disk"),
        **sums,
    }


def licensing(body: Any) -> dict[str, Any]:
    """Registration and authorization status, and the earlier of their two expiry dates."""
    status = _object(body, "licensing")
    registration = _object(status.get("registration") or {}, "licensing.registration")
    authorization = _object(status.get("authorization") or {}, "licensing.authorization")
    expiries = [
        _timestamp(part.get("expires"), f"licensing.{name}.expires")
        for name, part in (("registration", registration), ("authorization", authorization))
    ]
    known = [e for e in expiries if e is not None]
    return {
        "license_registration": _text(registration.get("status"), "licensing.registration.status"),
        "license_authorization": _text(authorization.get("status"), "licensing.authorization.status"),
        "license_expires_at": min(known) if known else None,
    }


def lab_ids(body: Any) -> list[str]:
    if not isinstance(body, list) or not all(isinstance(i, str) and i for i in body):
        raise ShapeError(f"labs listed as {describe(body)}, not lab ids")
    return body


def lab(body: Any, lab_id: str) -> tuple[str, str | None, str | None]:
    """`labs/{id}` (LabResponse): its state, `lab_title` and `owner_username`."""
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        raise ShapeError(f"lab {lab_id} is {describe(body)}, not a lab with a state")
    return (
        body["state"],
        _text(body.get("lab_title"), "lab_title"),
        _text(body.get("owner_username"), "owner"),
    )


def lab_state(body: Any, lab_id: str) -> str:
    """`labs/{id}/state` answers a JSON string (DEFINED_ON_CORE, STOPPED, STARTED)."""
    if not isinstance(body, str):
        raise ShapeError(f"lab {lab_id} state is {describe(body)}")
    return body


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ShapeError(f"{what} is {describe(value)}, not text")


_LEAP_SECOND = re.compile(r"(T\d\d:\d\d:)60", re.IGNORECASE)


def cml_datetime(text: str) -> datetime:
    """A date the controller wrote: RFC 3339 (`z`/`t` in either case, a leap second), or ISO 8601
    without a zone, which the controller writes in UTC. ValueError when it is not a date."""
    text = _LEAP_SECOND.sub(r"\g<1>59", text.strip()).upper().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _timestamp(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ShapeError(f"{what} is {describe(value)}, not a date")
    try:
        return cml_datetime(value)
    except ValueError as exc:
        raise ShapeError(f"{what} is {describe(value)}, not a date") from exc


def user_activity(
    body: Any, automation: Sequence[re.Pattern[str]], not_after: datetime | None = None
) -> dict[str, Any]:
    """The latest user activity in the controller's telemetry (`GET telemetry/events`).

    Events of the activity categories count, unless their user id or name matches one of
    the automation patterns (the monitor's own account, provisioning scripts). Timestamps
    without a zone are UTC, as the controller writes them. An event that is not an object
    with a category and a timestamp is skipped, not fatal: the history is long and mixed;
    so is one dated after `not_after` (our clock plus a small skew): an event dated 9999
    would otherwise keep the worker busy for ever and hide the real latest activity.
    """
    if not isinstance(body, list):
        raise ShapeError(f"telemetry events are {describe(body)}, not a list")
    latest: datetime | None = None
    for event in body:
        if not isinstance(event, dict) or event.get("category") not in ACTIVITY_CATEGORIES:
            continue
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        who = [str(data[key]) for key in ("user_id", "username", "user") if data.get(key)]
        if any(p.search(name) for p in automation for name in who):
            continue
        stamp = event.get("timestamp")
        if not isinstance(stamp, str):
            continue
        try:
            at = cml_datetime(stamp)
        except ValueError:
            continue
        if not_after is not None and at > not_after:
            continue
        if latest is None or at > latest:
            latest = at
    return {"last_user_activity_at": latest}
