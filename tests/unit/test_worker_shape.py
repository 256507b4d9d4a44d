"""One shape of a worker: the API's JSON of a worker, built by `worker_json`."""

from dataclasses import MISSING, fields
from datetime import UTC, datetime, timedelta

from cml_monitor.domain import Worker, WorkerStatus, worker_json
from cml_monitor.domain.cml import CmlStatus, ComputeHealth
from cml_monitor.domain.idle import IdleState
from cml_monitor.domain.scheduled_events import ScheduledEvent

AT = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)


def every_field_set() -> Worker:
    """A worker none of whose fields has its default: a field added to `Worker` and left out of
    its JSON fails the tests below."""
    at = AT
    worker = Worker(
        id="6f1c1a52-3c61-4c2e-9a0e-1b2c3d4e5f60",
        name="cml-7",
        aws_region="eu-west-1",
        aws_instance_id="i-0123456789abcdef0",
        created_at=at - timedelta(days=30),
        updated_at=at,
        cml_url="https://10.0.0.7",
        status=WorkerStatus.RUNNING,
        ec2_instance_state="running",
        ec2_system_status_check="ok",
        ec2_instance_status_check="impaired",
        cpu_utilization=0.0,
        memory_utilization=61.5,
        active_labs_count=2,
        last_activity_at=at - timedelta(seconds=1),
        last_collected_at=at,
        status_changed_at=at - timedelta(hours=3),
        cpu_threshold=80.0,
        memory_threshold=70.0,
        stop_requested_at=at - timedelta(minutes=5),
        cml=CmlStatus(
            reachable=True,
            version="2.9.0",
            ready=True,
            healthy=False,
            licensed=True,
            license_registration="COMPLETED",
            license_authorization="IN_COMPLIANCE",
            license_expires_at=at + timedelta(days=200),
            labs_started=2,
            labs_total=5,
            running_nodes=12,
            total_nodes=20,
            cpu_percent=33.5,
            memory_used_percent=44.0,
            disk_used_percent=55.0,
            allocated_cpus=16,
            cpu_count=32,
            computes=(ComputeHealth("ctrl", True, "READY"), ComputeHealth("c1", False, "DRAINING")),
            collected_at=at,
            license_checked_at=at - timedelta(hours=1),
            last_user_activity_at=at - timedelta(minutes=7),
            activity_checked_at=at - timedelta(minutes=2),
            errors=("licensing: HTTP 500",),
        ),
        ec2_scheduled_events=(ScheduledEvent("system-reboot", "reboot", at + timedelta(days=3), None),),
        auto_pause=False,
        idle=IdleState(
            False, None, at - timedelta(minutes=7), None, at + timedelta(hours=1), False, 5.0, 1.0, 2.0
        ),
        impaired_samples=1,
        metrics_source="controller",
        discovered_at=at - timedelta(days=30),
    )
    for f in fields(Worker):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        assert getattr(worker, f.name) != default, f"set {f.name} in this test"
    return worker


def test_the_written_out_worker_and_controller_json_name_every_field() -> None:
    worker = every_field_set()
    data = worker.to_json()
    assert list(data) == [f.name for f in fields(Worker)]
    assert data["status"] == "running" and data["created_at"] == "2026-10-26T10:00:00.123456Z"
    assert list(data["cml"]) == [f.name for f in fields(CmlStatus)]
    assert CmlStatus.from_json(data["cml"]) == worker.cml
    assert data["idle"] == worker.idle.to_json()
    shown = worker_json(worker, None)
    assert shown["monitoring"] == {"active": False, "next_run_at": None}
    assert worker_json(worker, AT)["monitoring"] == {
        "active": True,
        "next_run_at": "2026-11-25T10:00:00.123456Z",
    }


def test_timestamps_read_the_same_whatever_their_zone() -> None:
    from datetime import timezone

    from cml_monitor.domain.times import to_iso

    assert to_iso(AT) == "2026-11-25T10:00:00.123456Z"
    assert to_iso(AT.replace(microsecond=0)) == "2026-11-25T10:00:00Z"
    assert to_iso(AT.astimezone(timezone(timedelta(hours=2)))) == "2026-11-25T10:00:00.123456Z"
    assert to_iso(datetime.fromisoformat("2026-11-25T10:00:00Z")) == "2026-11-25T10:00:00Z"
    assert to_iso(None) is None
