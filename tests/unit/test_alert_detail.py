"""Every alert kind says in words what it is about (the dashboard shows it beside the value)."""

from __future__ import annotations

from datetime import UTC, datetime

from cml_monitor.alerts.engine import unreachable_detail
from cml_monitor.alerts.rules import RuleSettings, samples_for
from cml_monitor.alerts.state import AlertKind, Verdict
from cml_monitor.domain import CmlStatus, WorkerMetricsCollected, WorkerStatus

from ..helpers import make_event


def _violating(event: WorkerMetricsCollected) -> dict[AlertKind, str | None]:
    return {s.kind: s.detail for s in samples_for(event, RuleSettings()) if s.verdict is Verdict.VIOLATING}


def test_status_check_unexpected_stop_controller_and_disk_details() -> None:
    healthy = CmlStatus.from_json(
        {"reachable": True, "disk_used_percent": 96.0, "healthy": True, "ready": True}
    )
    running = make_event(
        previous_status=WorkerStatus.RUNNING,
        cpu_utilization=5.0,
        memory_utilization=5.0,
        system_status="impaired",
        instance_status="ok",
        cml=healthy,
    )
    found = _violating(running)
    assert found[AlertKind.STATUS_CHECK] == "system status check impaired"
    assert found[AlertKind.DISK] == "the controller's disk is 96.0 % full"
    both = make_event(system_status="impaired", instance_status="impaired")
    assert _violating(both)[AlertKind.STATUS_CHECK] == "system and instance status check impaired"
    down = make_event(
        previous_status=WorkerStatus.RUNNING,
        cml=CmlStatus.from_json({"reachable": False, "errors": ["system_information: connection refused"]}),
    )
    assert _violating(down)[AlertKind.CML_UNREACHABLE] == "system_information: connection refused"
    silent = make_event(cml=CmlStatus.from_json({"reachable": False}))
    assert _violating(silent)[AlertKind.CML_UNREACHABLE] == "the controller did not answer"
    stopped = make_event(
        status=WorkerStatus.STOPPED,
        previous_status=WorkerStatus.RUNNING,
        instance_state="stopped",
        system_status=None,
        instance_status=None,
    )
    assert _violating(stopped)[AlertKind.UNEXPECTED_STOP] == (
        "EC2 reports it stopped after running; nobody asked the monitor to stop it"
    )


def test_unreachable_detail_says_since_when() -> None:
    at = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert unreachable_detail(at) == "no successful collection since 2026-11-25 09:30 UTC"
    assert unreachable_detail(None) == "no successful collection since its registration"
