"""What many tests share: waiting with a deadline, registering a worker, recording events, and
wiring the monitoring loop (monitor + scheduler) the way `build_runtime` does, for tests that
drive it without the whole runtime. Test modules import these from here, never from each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.jobstores.base import BaseJobStore
from opentelemetry import trace

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import Worker, WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.idle import IdlePolicy
from cml_monitor.monitoring import (
    FleetCollector,
    FleetMonitor,
    MonitoredWorkers,
    ObserverPublisher,
    RegionJobs,
    WorkerMonitoringScheduler,
)
from cml_monitor.monitoring.monitor import OutcomeListener
from cml_monitor.monitoring.observers import EventObserver, SeedObserver
from cml_monitor.monitoring.ports import AwsClient, CmlClient, RegionLeases, WorkerStore

REGION = "us-east-1"


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


async def register(repo: Any, instance_id: str, cml_url: str | None = None, region: str = REGION) -> Worker:
    """Register a worker for an EC2 instance straight in the repository."""
    worker = Worker.register(
        name=f"cml-{instance_id[-4:]}",
        aws_region=region,
        aws_instance_id=instance_id,
        now=datetime.now(UTC),
        cml_url=cml_url,
    )
    return await repo.add_async(worker)


class Events:
    """An observer (the seed's plain-callable form) that keeps every event's JSON."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, data: dict[str, Any]) -> None:
        self.items.append(data)

    def of(self, worker_id: str) -> list[dict[str, Any]]:
        return [e for e in self.items if e["worker_id"] == worker_id]


def metrics_event(worker_id: str, *, cpu: float, at: datetime | None = None) -> WorkerMetricsCollected:
    """A running worker's metrics event, as the collector would make it."""
    return WorkerMetricsCollected(
        worker_id=worker_id,
        worker_name="w",
        aws_instance_id="i-0",
        aws_region=REGION,
        status=WorkerStatus.RUNNING,
        previous_status=WorkerStatus.RUNNING,
        timestamp=at or datetime.now(UTC),
        cpu_utilization=cpu,
        memory_utilization=None,
        instance_state="running",
        system_status="ok",
        instance_status="ok",
        active_labs_count=0,
    )


@dataclass
class Monitoring:
    """The monitoring loop's parts, wired as `build_runtime` wires them."""

    monitor: FleetMonitor
    scheduler: WorkerMonitoringScheduler
    collector: FleetCollector
    jobs: RegionJobs
    publisher: ObserverPublisher


def build_monitoring(
    repository: WorkerStore,
    aws: AwsClient,
    *,
    cml_client: CmlClient | None = None,
    observers: Sequence[EventObserver | SeedObserver] = (),
    job_store: BaseJobStore | None = None,
    leases: RegionLeases | None = None,
    poll_interval: int = 300,
    clock: Clock = utcnow,
    tracer: trace.Tracer | None = None,
    idle_policy: IdlePolicy | None = None,
    observer_timeout: float = 60.0,
    outcome_listeners: Sequence[OutcomeListener] = (),
    holder: str = "local",
) -> Monitoring:
    monitored = MonitoredWorkers()
    collector = FleetCollector(
        repository, aws, cml_client, clock=clock, tracer=tracer, idle_policy=idle_policy
    )
    publisher = ObserverPublisher(observers, timeout=observer_timeout)
    monitor = FleetMonitor(
        repository,
        collector,
        publisher,
        monitored,
        leases=leases,
        holder=holder,
        poll_interval=poll_interval,
        clock=clock,
        outcome_listeners=outcome_listeners,
    )
    jobs = RegionJobs(job_store, poll_interval=poll_interval, clock=clock)
    scheduler = WorkerMonitoringScheduler(monitor, monitored, repository, jobs, poll_interval=poll_interval)
    return Monitoring(monitor, scheduler, collector, jobs, publisher)
