"""From a metrics event to one sample per alert kind: what each rule says about this collection.

Rules read the typed `WorkerMetricsCollected` as the collector made it (no JSON, no re-parsing),
and judge time by the event's own timestamp, which the injected clock stamped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cml_monitor.domain import CmlStatus, ScheduledEvent, WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.cml import AUTHORIZATION_OK, REGISTRATION_OK
from cml_monitor.domain.idle import IdleState
from cml_monitor.domain.times import to_iso

from .inhibit import usage_alerts_inhibited
from .state import AlertKind, Sample, Verdict, threshold_verdict

STOPPED = frozenset(
    {WorkerStatus.STOPPING, WorkerStatus.STOPPED, WorkerStatus.SHUTTING_DOWN, WorkerStatus.TERMINATED}
)


@dataclass(frozen=True, slots=True)
class RuleSettings:
    cpu_threshold: float = 90.0
    memory_threshold: float = 90.0
    hysteresis: float = 5.0
    disk_threshold: float = 90.0
    license_warning_days: int = 14


def samples_for(event: WorkerMetricsCollected, rules: RuleSettings) -> list[Sample]:
    status = event.status
    running = status is WorkerStatus.RUNNING
    samples: list[Sample] = []

    inhibited = usage_alerts_inhibited(status.value, unreachable=False)
    for kind, value, override, default in (
        (AlertKind.CPU, event.cpu_utilization, event.cpu_threshold, rules.cpu_threshold),
        (AlertKind.MEMORY, event.memory_utilization, event.memory_threshold, rules.memory_threshold),
    ):
        threshold = default if override is None else float(override)
        if inhibited:
            # A stopped worker has no load to alert on: close what was open, open nothing.
            verdict = Verdict.CLEAR if not running else Verdict.HOLD
        else:
            verdict = threshold_verdict(value, threshold, rules.hysteresis)
        samples.append(Sample(kind, verdict, value, threshold))

    checks = {"system": event.system_status, "instance": event.instance_status}
    impaired = [name for name, value in checks.items() if value == "impaired"]
    samples.append(
        Sample(
            AlertKind.STATUS_CHECK,
            Verdict.VIOLATING,
            detail=" and ".join(impaired) + " status check impaired",
        )
        if impaired
        else Sample(AlertKind.STATUS_CHECK, Verdict.CLEAR)
    )

    if running:
        stop_verdict = Verdict.CLEAR
    elif event.previous_status is WorkerStatus.RUNNING and status in STOPPED and not event.stop_requested:
        stop_verdict = Verdict.VIOLATING
    else:
        stop_verdict = Verdict.HOLD
    samples.append(
        Sample(
            AlertKind.UNEXPECTED_STOP,
            stop_verdict,
            detail=f"EC2 reports it {status.value} after running; nobody asked the monitor to stop it"
            if stop_verdict is Verdict.VIOLATING
            else None,
        )
    )

    reachable = None if event.cml is None else event.cml.reachable
    if not running or reachable is None:
        cml_verdict = Verdict.CLEAR
    else:
        cml_verdict = Verdict.CLEAR if reachable else Verdict.VIOLATING
    errors = () if event.cml is None else event.cml.errors
    unreachable_detail = (
        ("; ".join(str(e) for e in errors) or "the controller did not answer") if reachable is False else None
    )
    samples.append(Sample(AlertKind.CML_UNREACHABLE, cml_verdict, detail=unreachable_detail))

    samples += controller_samples(event.cml if running else None, rules, now=event.timestamp)
    samples.append(scheduled_event_sample(event.scheduled_events))
    samples.append(idle_sample(event.idle))

    # A metrics event is a successful collection: the worker is reachable again.
    samples.append(Sample(AlertKind.UNREACHABLE, Verdict.CLEAR))
    return samples


# Samples are values: the common "nothing to say" ones are made once, not per worker and cycle.
_CONTROLLER_KINDS = (AlertKind.CML_UNHEALTHY, AlertKind.LICENSE, AlertKind.DISK)
_NOTHING_TO_SAY = [Sample(kind, Verdict.CLEAR) for kind in _CONTROLLER_KINDS]
_UNSEEN = [Sample(kind, Verdict.HOLD) for kind in _CONTROLLER_KINDS]
_NO_EVENT = Sample(AlertKind.SCHEDULED_EVENT, Verdict.CLEAR)
_NOT_IDLE = Sample(AlertKind.IDLE, Verdict.CLEAR)


def controller_samples(cml: CmlStatus | None, rules: RuleSettings, *, now: datetime) -> list[Sample]:
    """Health, licence and disk of a running worker's controller.

    Nothing to say (stopped worker, no controller, or the controller unreachable, which
    `cml_unreachable` covers) clears health and disk; the licence holds what it was, since a
    licence does not get better because we cannot see it.
    """
    if cml is None or not cml.reachable:
        clear = Verdict.CLEAR if cml is None else Verdict.HOLD
        return [
            Sample(AlertKind.CML_UNHEALTHY, clear),
            Sample(AlertKind.LICENSE, clear),
            Sample(AlertKind.DISK, clear),
        ]
    problem = cml.health_problem
    health = Sample(AlertKind.CML_UNHEALTHY, Verdict.VIOLATING if problem else Verdict.CLEAR, detail=problem)
    used = cml.disk_used_percent
    disk = Sample(
        AlertKind.DISK,
        threshold_verdict(used, rules.disk_threshold, rules.hysteresis),
        used,
        rules.disk_threshold,
        None if used is None else f"the controller's disk is {used:.1f} % full",
    )
    return [health, license_sample(cml, rules, now), disk]


def license_sample(cml: CmlStatus, rules: RuleSettings, now: datetime) -> Sample:
    """Registration or authorization not in order, or expiring within the warning days."""
    days_left = None
    if cml.license_expires_at is not None:
        days_left = round((cml.license_expires_at - now).total_seconds() / 86_400, 1)
    problems = []
    if cml.licensed is False:
        problems.append("the controller reports itself unlicensed")
    if cml.license_registration not in (None, REGISTRATION_OK):
        problems.append(f"registration {cml.license_registration}")
    if cml.license_authorization not in (None, AUTHORIZATION_OK):
        problems.append(f"authorization {cml.license_authorization}")
    if days_left is not None and days_left <= rules.license_warning_days:
        problems.append(f"expires in {days_left:g} days" if days_left > 0 else "expired")
    if problems:
        return Sample(
            AlertKind.LICENSE,
            Verdict.VIOLATING,
            days_left,
            float(rules.license_warning_days),
            "; ".join(problems),
        )
    known = cml.licensed is not None or cml.license_registration is not None
    return Sample(AlertKind.LICENSE, Verdict.CLEAR if known else Verdict.HOLD, days_left)


def scheduled_event_sample(events: Sequence[ScheduledEvent]) -> Sample:
    """Fires while AWS has an event scheduled for the instance; says what and when."""
    if not events:
        return _NO_EVENT
    return Sample(AlertKind.SCHEDULED_EVENT, Verdict.VIOLATING, detail="; ".join(e.summary() for e in events))


def idle_sample(idle: IdleState) -> Sample:
    """Fires while the worker is idle; says since when, and when it will be paused."""
    if not idle.idle:
        return _NOT_IDLE
    pause_at = to_iso(idle.pause_at)
    detail = f"idle since {to_iso(idle.idle_since)}" + (f"; auto-pause at {pause_at}" if pause_at else "")
    return Sample(AlertKind.IDLE, Verdict.VIOLATING, detail=detail)
