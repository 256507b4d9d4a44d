"""Isolation of bad values, the pure rules: control characters removed at the edge (controllers,
AWS, EventBridge), dates in the future never taken as activity or as the time of a change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cml_monitor.aws.ec2 import InstanceStatus
from cml_monitor.aws.eventbridge import ScheduledChange, StateChange, parse
from cml_monitor.cml import shapes
from cml_monitor.cml.client import decode
from cml_monitor.domain import Worker, WorkerStatus
from cml_monitor.domain.cml import CmlStatus, ControllerReading
from cml_monitor.domain.idle import IdleFacts, IdlePolicy, IdleState, next_idle_state
from cml_monitor.domain.text import clean, clean_deep, control_character
from cml_monitor.monitoring.state_changes import StateChangeApplier

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
REGION = "us-east-1"


def test_control_characters_are_removed_but_tab_and_line_breaks_kept() -> None:
    assert clean("cml-\x00compute\x1b[31m\x07") == "cml-compute[31m"
    assert clean("line one\nline\ttwo\r\n") == "line one\nline\ttwo\r\n"
    assert clean_deep({"a\x00": ["x\x01", 1, None, {"b": "\x1fy"}]}) == {"a": ["x", 1, None, {"b": "y"}]}
    assert control_character("ok\x00") == "U+0000" and control_character("fine\n") is None


def test_a_controller_body_is_cleaned_only_when_it_carries_an_escape() -> None:
    assert decode(b'{"hostname": "a\\u0000b\\u001bc", "s": "\\b\\f"}') == {"hostname": "abc", "s": ""}
    plain = b'{"hostname": "cml-1", "n": [1, 2]}'
    assert decode(plain) == json.loads(plain)


def test_telemetry_dated_in_the_future_is_not_activity() -> None:
    events = [
        {"category": "user_activity", "timestamp": "9999-12-31T23:00:00", "data": {"user_id": "x"}},
        {"category": "start_lab", "timestamp": "2026-11-29T11:50:00", "data": {"user_id": "alice"}},
        {"category": "start_lab", "timestamp": "2026-11-29T12:04:00", "data": {"user_id": "bob"}},
    ]
    found = shapes.user_activity(events, [], NOW + timedelta(minutes=5))
    assert found["last_user_activity_at"] == datetime(2026, 11, 29, 12, 4, tzinfo=UTC)  # within the skew
    only_future = shapes.user_activity(events[:1], [], NOW + timedelta(minutes=5))
    assert only_future["last_user_activity_at"] is None


def test_a_future_activity_is_never_kept_by_the_status_nor_the_idle_rule() -> None:
    far = datetime(9999, 12, 31, tzinfo=UTC)
    status = CmlStatus(last_user_activity_at=far)  # stored before the rule existed
    after = status.apply(ControllerReading(True, {"last_user_activity_at": far}), NOW)
    assert after.last_user_activity_at is None
    facts = IdleFacts(
        running=True,
        has_controller=True,
        controller_reachable=True,
        labs_started=0,
        cpu_utilization=1.0,
        last_user_activity_at=far,
        started_at=far,
        monitored_since=NOW - timedelta(days=1),
    )
    policy = IdlePolicy(timeout=timedelta(hours=1))
    state = next_idle_state(
        IdleState(last_user_activity_at=far),
        facts,
        now=NOW,
        previous_collection=None,
        policy=policy,
        auto_pause=False,
    )
    assert state.idle and state.last_user_activity_at is None


def test_strings_from_aws_lose_their_control_characters() -> None:
    status = InstanceStatus.from_item(
        {
            "InstanceId": "i-0123456789abcdef0",
            "InstanceState": {"Name": "running\x00"},
            "SystemStatus": {"Status": "ok\x1b"},
            "InstanceStatus": {"Status": "impaired\x00"},
            "Events": [{"Code": "system-reboot\x00", "Description": "reboot\x00 for\tmaintenance"}],
        }
    )
    assert (status.instance_state, status.system_status, status.instance_status) == (
        "running",
        "ok",
        "impaired",
    )
    assert status.scheduled_events[0].code == "system-reboot"
    assert status.scheduled_events[0].description == "reboot for\tmaintenance"
    change = parse(
        json.dumps(
            {
                "source": "aws.health",
                "detail-type": "AWS Health Event",
                "time": "2026-11-29T12:00:00Z",
                "resources": ["arn:aws:ec2:us-east-1:1:instance/i-0123456789abcdef0"],
                "detail": {
                    "eventTypeCategory": "scheduledChange",
                    "service": "EC2",
                    "eventTypeCode": "AWS_\x00EC2",
                },
            }
        )
    )
    assert isinstance(change, ScheduledChange) and change.event_type == "AWS_EC2"


class _Store:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.written: list[tuple[Worker, datetime]] = []

    async def get_by_instance_id_async(self, aws_instance_id: str) -> Worker | None:
        return self.worker

    async def apply_state_change_async(self, worker: Worker, fence: Any, expected_status: str) -> bool:
        self.written.append((worker, fence))
        return True


async def test_an_ec2_event_dated_in_the_future_is_taken_as_now() -> None:
    worker = Worker.register(name="w", aws_region=REGION, aws_instance_id="i-0123456789abcdef0", now=NOW)
    worker.update_ec2_state(instance_state="running", system_status="ok", instance_status="ok", now=NOW)
    store = _Store(worker)
    published: list[Any] = []

    async def publish(events: list[Any]) -> None:
        published.extend(events)

    applier = StateChangeApplier(store, publish, lambda _id: None, clock=lambda: NOW + timedelta(minutes=1))
    change = StateChange("i-0123456789abcdef0", "stopped", datetime(9999, 1, 1, tzinfo=UTC), REGION)
    assert await applier(change) == "applied"
    assert worker.status is WorkerStatus.STOPPED
    assert worker.status_changed_at == worker.last_collected_at == NOW + timedelta(minutes=1)
