"""Every alert kind says in words what it is about (the dashboard shows it beside the value)."""

from __future__ import annotations

from datetime import UTC, datetime

from cml_monitor.alerts.engine import unreachable_detail
from cml_monitor.alerts.rules import RuleSettings, samples_for
from cml_monitor.alerts.state import AlertKind, Verdict


def _violating(event: dict) -> dict[AlertKind, str | None]:  # type: ignore[type-arg]
    return {s.kind: s.detail for s in samples_for(event, RuleSettings()) if s.verdict is Verdict.VIOLATING}


def test_status_check_unexpected_stop_controller_and_disk_details() -> None:
    running = {
        "status": "running",
        "previous_status": "running",
        "timestamp": "2026-11-25T10:00:00Z",
        "metrics": {"cpu_utilization": 5.0, "memory_utilization": 5.0},
        "ec2": {"instance_state": "running", "system_status": "impaired", "instance_status": "ok"},
        "cml": {"reachable": True, "disk_used_percent": 96.0, "healthy": True, "ready": True},
    }
    found = _violating(running)
    assert found[AlertKind.STATUS_CHECK] == "system status check impaired"
    assert found[AlertKind.DISK] == "the controller's disk is 96.0 % full"
    down = {**running, "cml": {"reachable": False, "errors": ["system_information: connection refused"]}}
    assert _violating(down)[AlertKind.CML_UNREACHABLE] == "system_information: connection refused"
    stopped = {**running, "status": "stopped", "ec2": {"instance_state": "stopped"}, "cml": None}
    assert "EC2 reports it stopped after running" in str(_violating(stopped)[AlertKind.UNEXPECTED_STOP])


def test_unreachable_detail_says_since_when() -> None:
    at = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert (
        unreachable_detail({"last_collected_at": at}) == "no successful collection since 2026-11-25 09:30 UTC"
    )
    assert (
        unreachable_detail({"last_collected_at": None}) == "no successful collection since its registration"
    )
