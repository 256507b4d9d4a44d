from datetime import UTC, datetime, timedelta

import pytest

from cml_monitor.domain import (
    Worker,
    WorkerRegistered,
    WorkerStatus,
    WorkerStatusChanged,
    WorkerTelemetryUpdated,
    WorkerTerminated,
    map_ec2_state_to_status,
)

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("pending", WorkerStatus.PENDING),
        ("running", WorkerStatus.RUNNING),
        ("stopping", WorkerStatus.STOPPING),
        ("stopped", WorkerStatus.STOPPED),
        ("shutting-down", WorkerStatus.SHUTTING_DOWN),
        ("terminated", WorkerStatus.TERMINATED),
        ("RUNNING", WorkerStatus.RUNNING),
        ("rebooting", WorkerStatus.UNKNOWN),
        ("", WorkerStatus.UNKNOWN),
        (None, WorkerStatus.UNKNOWN),
    ],
)
def test_every_ec2_state_maps_to_its_status(state: str | None, status: WorkerStatus) -> None:
    assert map_ec2_state_to_status(state) is status


def _worker() -> Worker:
    return Worker.register(name="w1", aws_region="us-east-1", aws_instance_id="i-0123456789abcdef0", now=NOW)


def test_register_raises_registered_event() -> None:
    worker = _worker()
    events = worker.pull_events()
    assert [type(e) for e in events] == [WorkerRegistered]
    assert worker.status is WorkerStatus.UNKNOWN
    assert worker.pull_events() == []


def test_status_change_and_termination_events() -> None:
    worker = _worker()
    worker.pull_events()
    later = NOW + timedelta(minutes=5)
    previous = worker.update_ec2_state(
        instance_state="running", system_status="ok", instance_status="ok", now=later
    )
    assert previous is WorkerStatus.UNKNOWN
    assert worker.status_changed_at == later
    worker.update_ec2_state(instance_state="running", system_status="ok", instance_status="ok", now=later)
    worker.update_ec2_state(instance_state="terminated", system_status=None, instance_status=None, now=later)
    kinds = [type(e) for e in worker.pull_events()]
    assert kinds == [WorkerStatusChanged, WorkerStatusChanged, WorkerTerminated]
    assert worker.is_terminated


def test_telemetry_keeps_zero_and_none_apart() -> None:
    worker = _worker()
    worker.update_ec2_state(instance_state="running", system_status="ok", instance_status="ok", now=NOW)
    worker.update_telemetry(cpu_utilization=0.0, memory_utilization=None, active_labs_count=None, now=NOW)
    assert worker.cpu_utilization == 0.0
    assert worker.memory_utilization is None
    assert worker.active_labs_count == 0
    assert worker.last_activity_at == NOW
    telemetry = [e for e in worker.pull_events() if isinstance(e, WorkerTelemetryUpdated)]
    assert telemetry[0].cpu_utilization == 0.0
