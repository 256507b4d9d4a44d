"""The seams of the event pipeline: observers side by side and isolated, the job trampoline."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cml_monitor.domain import WorkerMetricsCollected
from cml_monitor.domain.collections import TRIGGER_ANCHOR
from cml_monitor.monitoring import MonitoredWorkers, ObserverPublisher, run_region_collection
from cml_monitor.monitoring.job import RUNNERS
from cml_monitor.monitoring.region_jobs import AlignedIntervalTrigger

from ..helpers import make_event


def _event(worker_id: str) -> WorkerMetricsCollected:
    return make_event(worker_id, cpu_utilization=1.0, memory_utilization=2.0)


class Batches:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def observe(self, events: Any) -> None:
        self.batches.append([e.worker_id for e in events])


class Failing:
    async def observe(self, events: Any) -> None:
        raise RuntimeError("boom")


class Hanging:
    async def observe(self, events: Any) -> None:
        await asyncio.Event().wait()


async def test_a_region_is_one_batch_and_a_failing_or_hanging_observer_holds_up_no_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Batches()
    failures: list[str] = []
    publisher = ObserverPublisher([Failing(), Hanging(), seen], timeout=0.2, on_failure=failures.append)
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(publisher.publish([_event("a"), _event("b")]), 5)
    assert seen.batches == [["a", "b"]]
    assert sorted(failures) == ["Failing", "Hanging"]
    assert "Observer Failing failed on 2 events" in caplog.text
    assert "Observer Hanging took over" in caplog.text


async def test_the_seeds_plain_callable_gets_each_events_json() -> None:
    received: list[dict[str, Any]] = []

    async def later(data: dict[str, Any]) -> None:
        received.append({"async": data["worker_id"]})

    publisher = ObserverPublisher([received.append, later])
    await publisher.publish([_event("a"), _event("b")])
    plain = [r for r in received if "worker_id" in r]
    assert [r["worker_id"] for r in plain] == ["a", "b"]
    assert plain[0]["metrics"] == {"cpu_utilization": 1.0, "memory_utilization": 2.0}
    assert {"async": "b"} in received


async def test_no_events_calls_no_observer() -> None:
    seen = Batches()
    await ObserverPublisher([seen]).publish([])
    assert seen.batches == []


async def test_the_job_function_runs_the_region_on_the_monitors_loop_from_another_thread() -> None:
    class Runner:
        def __init__(self) -> None:
            self.regions: list[tuple[str, int]] = []

        async def run_job(self, aws_region: str) -> None:
            self.regions.append((aws_region, threading.get_ident()))

    runner = Runner()
    RUNNERS.install(runner, asyncio.get_running_loop())
    try:
        await asyncio.to_thread(run_region_collection, "eu-west-1")  # as APScheduler's thread would
    finally:
        RUNNERS.uninstall(runner)
    assert runner.regions == [("eu-west-1", threading.get_ident())]
    assert RUNNERS.current() is None


def test_the_job_function_without_a_monitor_logs_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        run_region_collection("us-east-1")
    assert "ran before monitoring was configured" in caplog.text


def test_monitored_workers_follow_the_database_but_keep_pauses() -> None:
    monitored = MonitoredWorkers()
    monitored.replace([("a", "r1"), ("b", "r1"), ("c", "r2")])
    monitored.pause("b")
    assert monitored.replace([("a", "r1"), ("b", "r1")], region="r1") == ["a"]
    assert monitored.items() == [("a", "r1"), ("c", "r2")]
    monitored.add("b", "r1")  # started again by hand
    assert "b" in monitored.ids and not monitored.is_paused("b")


def test_aligned_trigger_snaps_back_to_the_grid() -> None:
    trigger = AlignedIntervalTrigger(seconds=300, start_date=TRIGGER_ANCHOR, timezone=UTC)
    odd = datetime(2026, 11, 25, 10, 3, 17, 412000, tzinfo=UTC)
    assert trigger.get_next_fire_time(odd, odd) == datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    on_grid = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    assert trigger.get_next_fire_time(on_grid, on_grid) == on_grid + timedelta(minutes=5)


async def test_a_cloudwatch_failure_keeps_the_ec2_state_of_the_cycle(sqlite_repository: Any) -> None:
    from cml_monitor.aws import InstanceStatus
    from cml_monitor.domain import WorkerStatus
    from cml_monitor.monitoring import FleetCollector

    from ..helpers import register

    worker = await register(sqlite_repository, "i-0123456789abcdef0")

    class CloudWatchDown:
        async def describe_instance_statuses(self, region: str, ids: Any) -> dict[str, InstanceStatus]:
            return {i: InstanceStatus(i, "running", "ok", "impaired") for i in ids}

        async def get_utilization(self, region: str, ids: Any) -> Any:
            raise RuntimeError("cloudwatch GetMetricData in us-east-1 failed: throttled")

    report = await FleetCollector(sqlite_repository, CloudWatchDown()).collect([worker.id])
    assert not report.failed
    (event,) = report.events
    assert (event.status, event.instance_status) == (WorkerStatus.RUNNING, "impaired")
    assert (event.cpu_utilization, event.memory_utilization) == (None, None)
    stored = await sqlite_repository.get_by_id_async(worker.id)
    assert stored.status is WorkerStatus.RUNNING and stored.ec2_instance_status_check == "impaired"
