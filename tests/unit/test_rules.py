"""The rules read the typed event as the collector made it: no JSON, the event's own time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cml_monitor.alerts.rules import RuleSettings, samples_for
from cml_monitor.alerts.state import AlertKind, Verdict
from cml_monitor.domain import CmlStatus, ScheduledEvent, WorkerStatus
from cml_monitor.domain.idle import IdleState

from ..helpers import make_event

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def verdicts(**changes: object) -> dict[AlertKind, Verdict]:
    return {s.kind: s.verdict for s in samples_for(make_event(timestamp=AT, **changes), RuleSettings())}


def test_a_per_worker_threshold_wins_and_a_stop_mutes_usage() -> None:
    assert verdicts(cpu_utilization=80.0)[AlertKind.CPU] is Verdict.CLEAR
    assert verdicts(cpu_utilization=80.0, cpu_threshold=70.0)[AlertKind.CPU] is Verdict.VIOLATING
    stopped = verdicts(
        cpu_utilization=95.0, status=WorkerStatus.STOPPED, previous_status=WorkerStatus.RUNNING
    )
    assert stopped[AlertKind.CPU] is Verdict.CLEAR
    assert stopped[AlertKind.UNEXPECTED_STOP] is Verdict.VIOLATING
    ours = verdicts(status=WorkerStatus.STOPPED, previous_status=WorkerStatus.RUNNING, stop_requested=True)
    assert ours[AlertKind.UNEXPECTED_STOP] is Verdict.HOLD


def test_licence_days_count_from_the_events_time_not_the_wall_clock() -> None:
    cml = CmlStatus(reachable=True, licensed=True, license_expires_at=AT + timedelta(days=10))
    samples = samples_for(make_event(timestamp=AT, cml=cml), RuleSettings(license_warning_days=14))
    (licence,) = [s for s in samples if s.kind is AlertKind.LICENSE]
    assert (licence.verdict, licence.value) == (Verdict.VIOLATING, 10.0)


def test_scheduled_events_and_idleness_say_what_and_when() -> None:
    event = ScheduledEvent("system-reboot", "reboot", AT + timedelta(days=1), None)
    idle = IdleState(idle=True, idle_since=AT - timedelta(hours=1), pause_at=AT + timedelta(minutes=5))
    found = samples_for(make_event(scheduled_events=(event,), idle=idle), RuleSettings())
    samples = {s.kind: s for s in found}
    assert samples[AlertKind.SCHEDULED_EVENT].verdict is Verdict.VIOLATING
    idle_detail = "idle since 2026-11-25T09:00:00Z; auto-pause at 2026-11-25T10:05:00Z"
    assert samples[AlertKind.IDLE].detail == idle_detail
