"""The monitoring loop end to end: real APScheduler, real moto over HTTP, real Redis and SQLite."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME, ControllerFleet
from cml_monitor.alerts import WorkerNotificationHandler
from cml_monitor.aws import AwsEc2Client
from cml_monitor.cml import CmlControllerClient
from cml_monitor.domain import Worker, WorkerStatus
from cml_monitor.monitoring import build_job_store, job_id_for_region
from cml_monitor.storage import CMLWorkerRepository
from cml_monitor.storage.alerts import AlertRepository

from .conftest import REGION, Moto
from .helpers import Events, Monitoring, build_monitoring, cpu, eventually, memory, register

__all__ = ["Events", "eventually", "register"]  # still importable from here by older tests


class RecordingHandler(WorkerNotificationHandler):
    """The seed's notification handler (the alert engine) recording its threshold-violation hook."""

    def __init__(self, repository: CMLWorkerRepository) -> None:
        super().__init__(AlertRepository(repository.engine), [])
        self.violations: list[tuple[str, str, str, float, float]] = []

    def _handle_threshold_violation(self, *args: Any) -> None:  # type: ignore[override]
        super()._handle_threshold_violation(*args)
        self.violations.append(args)


@pytest.fixture
async def make_monitoring(
    sqlite_repository: CMLWorkerRepository, aws: AwsEc2Client
) -> AsyncIterator[Callable[..., Monitoring]]:
    made: list[Monitoring] = []

    def factory(*, aws_client: Any = None, **kwargs: Any) -> Monitoring:
        monitoring = build_monitoring(sqlite_repository, aws_client or aws, **kwargs)
        made.append(monitoring)
        return monitoring

    yield factory
    for monitoring in made:
        await monitoring.scheduler.stop_async()


async def test_one_collection_gives_the_exact_values(
    moto: Moto, sqlite_repository: CMLWorkerRepository, make_monitoring: Callable[..., Any]
) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 42.0)
    memory(moto, instance, 61.5)
    worker = await register(sqlite_repository, instance)
    events = Events()
    monitoring = make_monitoring(observers=[events])
    await monitoring.scheduler.start_async()
    await eventually(lambda: events.of(worker.id))

    stored = await sqlite_repository.get_by_id_async(worker.id)
    assert stored.status is WorkerStatus.RUNNING
    assert (stored.cpu_utilization, stored.memory_utilization) == (42.0, 61.5)
    assert (stored.ec2_system_status_check, stored.ec2_instance_status_check) == ("ok", "ok")
    assert stored.last_collected_at is not None
    history = await sqlite_repository.list_metrics_async(worker.id)
    assert [(h.cpu_utilization, h.memory_utilization) for h in history] == [(42.0, 61.5)]
    event = events.of(worker.id)[0]
    assert event["status"] == "running"
    assert event["previous_status"] == "unknown"
    assert event["metrics"] == {"cpu_utilization": 42.0, "memory_utilization": 61.5}
    assert event["ec2"] == {"instance_state": "running", "system_status": "ok", "instance_status": "ok"}
    assert event["timestamp"].endswith("Z")


async def test_zero_cpu_stays_zero_and_missing_memory_is_null(
    moto: Moto, sqlite_repository: CMLWorkerRepository, make_monitoring: Callable[..., Any]
) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 0.0)
    worker = await register(sqlite_repository, instance)
    events = Events()
    await make_monitoring(observers=[events]).scheduler.start_async()
    await eventually(lambda: events.of(worker.id))
    stored = await sqlite_repository.get_by_id_async(worker.id)
    assert stored.cpu_utilization == 0.0
    assert stored.memory_utilization is None
    assert events.of(worker.id)[0]["metrics"] == {"cpu_utilization": 0.0, "memory_utilization": None}


async def test_stop_then_terminate_moves_status_and_ends_monitoring(
    moto: Moto, sqlite_repository: CMLWorkerRepository, make_monitoring: Callable[..., Any]
) -> None:
    (instance,) = moto.run_instances(1)
    worker = await register(sqlite_repository, instance)
    events = Events()
    monitoring = make_monitoring(observers=[events])
    await monitoring.scheduler.start_async()
    await eventually(lambda: events.of(worker.id))

    moto.ec2().stop_instances(InstanceIds=[instance])
    await monitoring.monitor.collect_soon(worker.id)
    stored = await sqlite_repository.get_by_id_async(worker.id)
    assert stored.status is WorkerStatus.STOPPED
    assert stored.cpu_utilization is None
    assert events.of(worker.id)[-1]["previous_status"] == "running"
    assert worker.id in monitoring.monitored.ids

    moto.ec2().terminate_instances(InstanceIds=[instance])
    await monitoring.monitor.collect_soon(worker.id)
    stored = await sqlite_repository.get_by_id_async(worker.id)
    assert stored.status is WorkerStatus.TERMINATED
    assert worker.id not in monitoring.monitored.ids
    assert monitoring.scheduler.next_run_at(worker.id) is None
    assert monitoring.scheduler.monitoring_jobs() == []
    run = await monitoring.scheduler.run_job(REGION)  # the region's next run finds no worker
    assert run.workers == 0
    assert dict(monitoring.jobs.runs) == {}  # and its job removed itself


async def test_a_deleted_workers_job_removes_itself(
    moto: Moto,
    sqlite_repository: CMLWorkerRepository,
    make_monitoring: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (instance,) = moto.run_instances(1)
    worker = await register(sqlite_repository, instance)
    monitoring = make_monitoring()
    await monitoring.scheduler.start_async()
    assert monitoring.scheduler.next_run_at(worker.id) is not None
    await sqlite_repository.remove_async(worker.id)
    with caplog.at_level(logging.WARNING):
        await monitoring.monitor.collect_soon(worker.id)
    assert monitoring.scheduler.next_run_at(worker.id) is None
    assert worker.id not in monitoring.monitored.ids
    assert f"Worker {worker.id} not found - stopping job" in caplog.text


async def test_cpu_95_calls_the_violation_once(
    moto: Moto, sqlite_repository: CMLWorkerRepository, make_monitoring: Callable[..., Any]
) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 95.0)
    memory(moto, instance, 40.0)
    worker = await register(sqlite_repository, instance)
    handler = RecordingHandler(sqlite_repository)
    events = Events()
    await make_monitoring(observers=[handler, events]).scheduler.start_async()
    await eventually(lambda: events.of(worker.id))
    assert handler.violations == [(worker.id, worker.name, "cpu", 95.0, 90.0)]


async def test_active_labs_come_from_the_controller_and_survive_its_outage(
    moto: Moto,
    sqlite_repository: CMLWorkerRepository,
    make_monitoring: Callable[..., Any],
    controllers: tuple[ControllerFleet, str],
) -> None:
    fleet, base = controllers
    controller = fleet.add("w1", running_labs=3, stopped_labs=1)
    (instance,) = moto.run_instances(1)
    worker = await register(sqlite_repository, instance, cml_url=fleet.url_for(base, "w1"))
    cml = CmlControllerClient(username=USERNAME, password=PASSWORD, timeout=2)
    events = Events()
    try:
        monitoring = make_monitoring(cml_client=cml, observers=[events])
        await monitoring.scheduler.start_async()
        await eventually(lambda: events.of(worker.id))
        assert (await sqlite_repository.get_by_id_async(worker.id)).active_labs_count == 3
        controller.unreachable = True
        await monitoring.monitor.collect_soon(worker.id)
        assert len(events.of(worker.id)) == 2
        stored = await sqlite_repository.get_by_id_async(worker.id)
        assert stored.active_labs_count == 3
        assert events.of(worker.id)[-1]["active_labs_count"] == 3
    finally:
        await cml.close()


async def test_aws_down_for_a_cycle_then_the_next_cycle_recovers(
    moto: Moto,
    sqlite_repository: CMLWorkerRepository,
    make_monitoring: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cml_fleet_sim.serving import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    (instance,) = moto.run_instances(1)  # moto keeps one in-process state for both servers
    cpu(moto, instance, 33.0)
    worker = await register(sqlite_repository, instance)
    client = AwsEc2Client(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    events = Events()
    monitoring = make_monitoring(aws_client=client, observers=[events], poll_interval=1)
    try:
        server.stop()
        with caplog.at_level(logging.ERROR):
            await monitoring.scheduler.start_async()
            await eventually(lambda: "❌ Failed to collect metrics for worker" in caplog.text)
        assert (await sqlite_repository.get_by_id_async(worker.id)).last_collected_at is None
        assert worker.id in monitoring.monitored.ids  # still monitored

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        await eventually(lambda: events.of(worker.id))
        assert (await sqlite_repository.get_by_id_async(worker.id)).cpu_utilization == 33.0
    finally:
        server.stop()
        await monitoring.scheduler.stop_async()
        await client.close()


async def test_restart_on_the_same_redis_store_resumes_jobs_without_duplicates(
    moto: Moto,
    sqlite_repository: CMLWorkerRepository,
    sqlite_url: str,
    redis_url: str,
    make_monitoring: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = [await register(sqlite_repository, i) for i in moto.run_instances(3)]
    first_events = Events()
    first = make_monitoring(
        job_store=build_job_store(redis_url, sqlite_url), observers=[first_events], poll_interval=2
    )
    await first.scheduler.start_async()
    await eventually(lambda: all(first_events.of(w.id) for w in workers))
    jobs_before = dict(first.jobs.runs)
    view_before = first.scheduler.monitoring_jobs()
    await first.scheduler.stop_async()
    assert list(jobs_before) == [REGION]

    events = Events()
    second = make_monitoring(
        job_store=build_job_store(redis_url, sqlite_url), observers=[events], poll_interval=2
    )
    with caplog.at_level(logging.INFO):
        await second.scheduler.start_async()
    assert "1 region jobs resumed from the job store" in caplog.text
    (resumed,) = dict(second.jobs.runs).items()  # the same job, no duplicate, next run on its grid
    assert resumed[0] == REGION
    assert timedelta(0) <= resumed[1] - jobs_before[REGION] <= timedelta(seconds=4)
    assert sorted(j["worker_id"] for j in second.scheduler.monitoring_jobs()) == sorted(w.id for w in workers)
    assert {j["job_id"] for j in second.scheduler.monitoring_jobs()} == {job_id_for_region(REGION)}
    assert len(view_before) == 3
    await eventually(lambda: all(events.of(w.id) for w in workers))
    assert len(await asyncio.to_thread(second.jobs._scheduler.get_jobs)) == 1


async def test_scheduler_start_drops_jobs_of_regions_emptied_while_down(
    moto: Moto,
    sqlite_repository: CMLWorkerRepository,
    sqlite_url: str,
    redis_url: str,
    make_monitoring: Callable[..., Any],
) -> None:
    keep = await register(sqlite_repository, moto.run_instances(1)[0])
    (gone_instance,) = moto.run_instances(1, region="eu-west-1")
    gone = Worker.register(
        name="gone", aws_region="eu-west-1", aws_instance_id=gone_instance, now=datetime.now(UTC)
    )
    await sqlite_repository.add_async(gone)
    first = make_monitoring(job_store=build_job_store(redis_url, sqlite_url))
    await first.scheduler.start_async()
    assert set(dict(first.jobs.runs)) == {REGION, "eu-west-1"}
    await first.scheduler.stop_async()
    await sqlite_repository.remove_async(gone.id)
    second = make_monitoring(job_store=build_job_store(redis_url, sqlite_url))
    await second.scheduler.start_async()
    assert set(dict(second.jobs.runs)) == {REGION}
    assert [j["worker_id"] for j in second.scheduler.monitoring_jobs()] == [keep.id]


async def test_region_jobs_use_fixed_ids_and_the_seed_options(
    moto: Moto, sqlite_repository: CMLWorkerRepository, sqlite_url: str, make_monitoring: Callable[..., Any]
) -> None:
    worker = await register(sqlite_repository, moto.run_instances(1)[0])
    monitoring = make_monitoring(job_store=build_job_store("", sqlite_url))
    await monitoring.scheduler.start_async()
    await monitoring.scheduler.start_monitoring_worker_async(worker.id)
    await monitoring.scheduler.start_monitoring_worker_async(worker.id)  # no duplicate
    (job,) = await asyncio.to_thread(monitoring.jobs._scheduler.get_jobs)
    assert job.id == job_id_for_region(REGION)
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
    assert job.args == (REGION,)
    assert [j["worker_id"] for j in monitoring.scheduler.monitoring_jobs()] == [worker.id]


async def test_spans_carry_the_worker_attributes(
    moto: Moto, sqlite_repository: CMLWorkerRepository, make_monitoring: Callable[..., Any]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 12.5)
    memory(moto, instance, 50.0)
    worker = await register(sqlite_repository, instance)
    events = Events()
    await make_monitoring(tracer=provider.get_tracer("test"), observers=[events]).scheduler.start_async()
    await eventually(lambda: events.of(worker.id))
    spans = [s for s in exporter.get_finished_spans() if s.name == "collect_worker_metrics"]
    assert len(spans) == 1
    attributes = dict(spans[0].attributes)
    assert attributes["worker_id"] == worker.id
    assert attributes["aws_instance_id"] == instance
    assert attributes["cpu_utilization"] == 12.5
    assert attributes["memory_utilization"] == 50.0


async def test_250_workers_cost_four_aws_requests_per_cycle(
    moto: Moto,
    sqlite_repository: CMLWorkerRepository,
    sqlite_url: str,
    redis_url: str,
    aws: AwsEc2Client,
    make_monitoring: Callable[..., Any],
) -> None:
    n = 250
    ids = moto.run_instances(n)
    for instance in ids:
        await register(sqlite_repository, instance)
    events = Events()
    monitoring = make_monitoring(
        job_store=build_job_store(redis_url, sqlite_url), observers=[events], poll_interval=2
    )
    await monitoring.scheduler.start_async()
    await eventually(lambda: len(events.items) >= n, timeout=60)
    aws.requests.reset()
    await eventually(lambda: len(events.items) >= 2 * n, timeout=60)
    counts = aws.requests.snapshot()
    assert counts == {("ec2", "DescribeInstanceStatus"): 3, ("cloudwatch", "GetMetricData"): 1}
    assert sum(counts.values()) <= -(-n // 100) + -(-2 * n // 500)


async def test_a_region_run_feeds_the_alert_engine_in_one_batch(
    moto: Moto, sqlite_repository: CMLWorkerRepository, make_monitoring: Callable[..., Any]
) -> None:
    from cml_monitor.alerts import AlertEngine

    workers = [await register(sqlite_repository, i) for i in moto.run_instances(30)]
    engine = AlertEngine(AlertRepository(sqlite_repository.engine), [])
    batches: list[int] = []
    original = engine.process

    async def counted(batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        await original(batch)

    engine.process = counted  # type: ignore[method-assign]
    events = Events()
    await make_monitoring(observers=[engine, events]).scheduler.start_async()
    await eventually(lambda: len(events.items) == len(workers))
    assert batches == [len(workers)]  # one evaluation, one transaction, for the whole region
