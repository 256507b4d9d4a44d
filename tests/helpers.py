"""What many tests share: waiting with a deadline, registering workers, CloudWatch figures in
moto, recording events and webhook requests, typed events, reading SSE, and wiring the
monitoring loop (monitor + scheduler) the way `build_runtime` does for tests that drive it
without the whole runtime. Test modules import these from here, never from each other.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import BaseJobStore
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
EVENT_TIME = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
VALID = {
    "name": "lab-1",
    "aws_region": REGION,
    "aws_instance_id": "i-0123456789abcdef0",
}  # a registration body


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
    monitored: MonitoredWorkers


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
    return Monitoring(monitor, scheduler, collector, jobs, publisher, monitored)


def put(moto: Any, namespace: str, metric: str, dims: list[dict], value: float, minutes_ago: float) -> None:
    moto.cloudwatch().put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": dims,
                "Value": value,
                "Timestamp": datetime.now(UTC) - timedelta(minutes=minutes_ago),
            }
        ],
    )


def cpu(moto: Any, instance_id: str, value: float, minutes_ago: float = 2) -> None:
    put(moto, "AWS/EC2", "CPUUtilization", [{"Name": "InstanceId", "Value": instance_id}], value, minutes_ago)


def memory(
    moto: Any, instance_id: str, value: float, extra: dict | None = None, minutes_ago: float = 2
) -> None:
    dims = [{"Name": "InstanceId", "Value": instance_id}]
    if extra:
        dims += [{"Name": k, "Value": v} for k, v in extra.items()]
    put(moto, "CWAgent", "mem_used_percent", dims, value, minutes_ago)


def make_event(worker_id: str = "w", **changes: object) -> WorkerMetricsCollected:
    values: dict[str, object] = {
        "worker_id": worker_id,
        "worker_name": "cml-1",
        "aws_instance_id": "i-0123456789abcdef0",
        "aws_region": "us-east-1",
        "status": WorkerStatus.RUNNING,
        "previous_status": WorkerStatus.PENDING,
        "timestamp": EVENT_TIME,
        "cpu_utilization": 42.0,
        "memory_utilization": 61.5,
        "instance_state": "running",
        "system_status": "ok",
        "instance_status": "ok",
        "active_labs_count": 3,
    }
    values.update(changes)
    return WorkerMetricsCollected(**values)  # type: ignore[arg-type]


async def register_with_controllers(app: Any, sim: Any, count: int) -> dict[str, str]:
    """Instance id → worker id, each worker with its simulated controller."""
    ids = {}
    for instance in sim.add_workers(count):
        body = {
            "name": instance.instance_id[-6:],
            "aws_region": REGION,
            "aws_instance_id": instance.instance_id,
            "cml_url": sim.controller_url(instance.instance_id),
        }
        response = await app.client.post("/api/workers", json=body)
        assert response.status_code == 201, response.text
        ids[instance.instance_id] = response.json()["id"]
    return ids


async def cycle(app: Any) -> None:
    """One region run of the app's monitor; every worker collected."""
    run = await app.runtime.monitor.run_region(REGION)
    assert run.report is not None and not run.report.failed


class Receiver:
    """A webhook receiver that records every request and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}  # path → answers, then 202
        self.stalls: dict[str, list[float]] = {}  # path → seconds to hold the next answers back
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(
            {
                "path": request.url.path,
                "query": str(request.url.query),
                "headers": dict(request.headers),
                "body": body,
                "json": json.loads(body),
                "at": time.monotonic(),
            }
        )
        stalls = self.stalls.get(request.url.path) or []
        if stalls:
            await asyncio.sleep(stalls.pop(0))  # a slow receiver, as seen from the sender
        answers = self.script.get(request.url.path) or []
        status, headers = answers.pop(0) if answers else (202, {})
        return Response(status_code=status, headers=headers)

    def of(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


def sse_events(chunk: bytes) -> list[tuple[str, str]]:
    """(event, data) of each Server-Sent Event in a chunk."""
    found = []
    for block in chunk.decode().replace("\r\n", "\n").split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            found.append((lines["event"], lines["data"]))
    return found


# -- acting on workers ------------------------------------------------------------------------


def quiet(sim: Any, instance_id: str) -> None:
    """No lab, a CPU under the idle floor: idle once nobody has been active for the timeout."""
    sim.set_labs(instance_id, running=0, stopped=1)
    sim.fleet.set_metrics(instance_id, cpu=2.0)


async def backdate(app: Any, worker_id: str, hours: float = 2.0) -> None:
    """Registered and seen starting `hours` ago, so that the idle timeout can have passed."""
    repository = app.runtime.repository
    worker = await repository.get_by_id_async(worker_id)
    assert worker is not None
    worker.created_at = worker.created_at - timedelta(hours=hours)
    if worker.status_changed_at is not None:
        worker.status_changed_at = worker.status_changed_at - timedelta(hours=hours)
    await repository.update_async(worker)


async def actions(app: Any, **params: Any) -> list[dict[str, Any]]:
    response = await app.client.get("/api/actions", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]
