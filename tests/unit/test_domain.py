from datetime import UTC, datetime, timedelta

import pytest

from cml_monitor.domain import (
    Worker,
    WorkerStatus,
    looks_like_id,
    map_ec2_state_to_status,
)
from cml_monitor.domain.collections import next_fire_time

from ..helpers import make_event

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


def test_register_gives_an_unknown_worker_with_an_id_of_ours() -> None:
    worker = _worker()
    assert worker.status is WorkerStatus.UNKNOWN
    assert looks_like_id(worker.id)
    assert not looks_like_id("i-0123456789abcdef0")


def test_status_change_stamps_the_time_and_termination_is_seen() -> None:
    worker = _worker()
    later = NOW + timedelta(minutes=5)
    previous = worker.update_ec2_state(
        instance_state="running", system_status="ok", instance_status="ok", now=later
    )
    assert previous is WorkerStatus.UNKNOWN
    assert worker.status_changed_at == later
    again = worker.update_ec2_state(
        instance_state="running", system_status="ok", instance_status="ok", now=later + timedelta(minutes=5)
    )
    assert again is WorkerStatus.RUNNING
    assert worker.status_changed_at == later  # no change, no new stamp
    worker.update_ec2_state(instance_state="terminated", system_status=None, instance_status=None, now=later)
    assert worker.is_terminated


def test_telemetry_keeps_zero_and_none_apart() -> None:
    worker = _worker()
    worker.update_ec2_state(instance_state="running", system_status="ok", instance_status="ok", now=NOW)
    worker.update_telemetry(cpu_utilization=0.0, memory_utilization=None, active_labs_count=None, now=NOW)
    assert worker.cpu_utilization == 0.0
    assert worker.memory_utilization is None
    assert worker.active_labs_count == 0
    assert worker.last_activity_at == NOW


def test_the_metrics_event_json_is_the_documented_shape() -> None:
    event = make_event()
    data = event.to_json()
    assert event.status_changed
    assert {k: data[k] for k in ("worker_id", "worker_name", "status", "previous_status", "timestamp")} == {
        "worker_id": "w",
        "worker_name": "cml-1",
        "status": "running",
        "previous_status": "pending",
        "timestamp": "2026-11-25T10:00:00Z",
    }
    assert data["metrics"] == {"cpu_utilization": 42.0, "memory_utilization": 61.5}
    assert data["ec2"] == {"instance_state": "running", "system_status": "ok", "instance_status": "ok"}
    assert data["active_labs_count"] == 3


def test_the_written_out_serialisations_name_every_field() -> None:
    from dataclasses import asdict, fields

    from cml_monitor.domain.history import MetricSample
    from cml_monitor.domain.idle import IdleState

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    sample = MetricSample("w", now, "running", 1.0, 2.0, 3, 4, 5.0)
    assert sample.to_record() == asdict(sample)
    state = IdleState(True, now, now, now, now, True, 1.0, 2.0, 3.0)
    assert list(state.to_json()) == [f.name for f in fields(IdleState)]
    assert state.to_json()["idle_since"] == "2026-01-02T03:04:05Z"
    assert IdleState.from_json(state.to_json()) == state


def test_next_fire_time_is_on_the_aligned_grid() -> None:
    at = datetime(2026, 11, 29, 12, 3, 7, tzinfo=UTC)
    assert next_fire_time(at, 300) == datetime(2026, 11, 29, 12, 5, tzinfo=UTC)
    assert next_fire_time(datetime(2026, 11, 29, 12, 5, tzinfo=UTC), 300) == datetime(
        2026, 11, 29, 12, 10, tzinfo=UTC
    )
