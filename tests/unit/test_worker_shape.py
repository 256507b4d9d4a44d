"""One shape of a worker: what `GET /api/workers/{id}` answers is what a live event's `worker`
says, because an event is the whole worker (`to_worker`) and both go through `worker_json`."""

import asyncio
import json
from dataclasses import MISSING, fields
from datetime import UTC, datetime, timedelta

import pytest

from cml_monitor.domain import Worker, WorkerMetricsCollected, WorkerStatus, worker_json
from cml_monitor.domain.cml import CmlStatus, ComputeHealth
from cml_monitor.domain.idle import IdleState
from cml_monitor.domain.scheduled_events import ScheduledEvent
from cml_monitor.monitoring.collector import metrics_event

from ..helpers import make_event

AT = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)

# The metrics event's JSON as scripts, seed observers and SSE clients have always had it.
EVENT_KEYS = [
    "worker_id",
    "worker_name",
    "aws_instance_id",
    "aws_region",
    "status",
    "previous_status",
    "timestamp",
    "metrics",
    "metrics_source",
    "ec2",
    "active_labs_count",
    "thresholds",
    "cml",
    "ec2_scheduled_events",
    "idle",
    "auto_pause",
    "impaired_samples",
    "stop_requested",
]


def every_field_set() -> Worker:
    """A worker none of whose fields has its default: a field added to `Worker` that the event
    does not carry fails the round trips below instead of going missing from the live view."""
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


def test_an_event_is_the_whole_worker_in_process_and_across_a_bus() -> None:
    worker = every_field_set()
    event = metrics_event(worker, WorkerStatus.PENDING)
    assert event.to_worker() == worker
    crossed = WorkerMetricsCollected.from_json(json.loads(json.dumps(event.to_bus_json())))
    assert crossed == event
    assert crossed.to_worker() == worker
    assert worker_json(crossed.to_worker(), AT) == worker_json(worker, AT)  # type: ignore[arg-type]


def test_the_event_json_keeps_its_fields_and_the_bus_adds_only_the_workers_own() -> None:
    event = metrics_event(every_field_set(), WorkerStatus.PENDING)
    assert list(event.to_json()) == EVENT_KEYS
    bus = event.to_bus_json()
    assert list(bus) == [*EVENT_KEYS, "worker_fields"]
    assert bus["worker_fields"] == {
        "created_at": "2026-10-26T10:00:00.123456Z",
        "updated_at": "2026-11-25T10:00:00.123456Z",
        "cml_url": "https://10.0.0.7",
        "last_activity_at": "2026-11-25T09:59:59.123456Z",
        "status_changed_at": "2026-11-25T07:00:00.123456Z",
        "stop_requested_at": "2026-11-25T09:55:00.123456Z",
        "discovered_at": "2026-10-26T10:00:00.123456Z",
    }


def test_an_event_without_the_workers_own_fields_says_no_worker() -> None:
    """Built by hand, or by a collector older than the fields: no `worker` rather than half one."""
    event = make_event()
    assert event.to_worker() is None
    assert "worker_fields" not in event.to_bus_json()
    assert WorkerMetricsCollected.from_json(event.to_bus_json()).to_worker() is None


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


async def test_each_stream_shape_gets_its_frames_and_the_worker_is_as_the_api_answers_it() -> None:
    from cml_monitor.live_events import EventHub, frame

    worker = every_field_set()
    event = metrics_event(worker, WorkerStatus.PENDING)
    hub = EventHub()
    hub.next_run = lambda seen: AT if seen == worker else None
    assert hub.worker_of(event) == worker_json(worker, AT)
    assert hub.worker_of(make_event()) is None  # no worker to say: none, not half one

    as_event, as_worker = hub.subscribe(), hub.subscribe(shape="worker")
    got_event, got_worker = (
        asyncio.ensure_future(as_event.__anext__()),
        asyncio.ensure_future(as_worker.__anext__()),
    )
    await asyncio.sleep(0)  # both subscribed
    await hub.observe([event, make_event()])
    assert await got_event == frame("metrics", event.to_json()) + frame("metrics", make_event().to_json())
    # The event from an older collector cannot say its worker: one resync, the dashboard reloads.
    assert await got_worker == frame("metrics", worker_json(worker, AT)) + frame(
        "resync", {"dropped": 0, "reason": "worker unknown"}
    )
    with pytest.raises(ValueError):
        await hub.subscribe(shape="nonsense").__anext__()


def test_a_frame_is_what_sse_starlette_would_encode() -> None:
    from sse_starlette import ServerSentEvent

    from cml_monitor.live_events import frame

    data = {"text": "two\nlines\r\nand \u2028 é", "n": 1.5, "none": None, "at": AT}
    assert (
        frame("metrics", data)
        == ServerSentEvent(data=json.dumps(data, default=str), event="metrics").encode()
    )
