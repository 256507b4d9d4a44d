"""`WorkerMonitoringScheduler`: which workers are monitored, and the APScheduler that runs them.

Mechanism (chosen by measurement, see README "Scheduler mechanism"): one persisted APScheduler
job per AWS region (`fleet-metrics:<region>`), not one per worker. APScheduler 3 writes every
job back to its store each time it runs, synchronously, on the event loop: 10,000 per-worker
jobs cost 4.7 s (Redis) to 11 s (PostgreSQL) of blocked loop per cycle. A region job runs a
`WorkerMetricsCollectionJob` for every monitored worker of its region, all at once, so the
batch collector still sees the whole region together.

The per-worker API of the seed is kept: `start_monitoring_worker_async` (the worker is
collected at once, then with its region), `stop_monitoring_worker_async`, the active set, and
a per-worker view of the jobs (`monitoring_jobs_async`). The set of monitored workers is the
database's (every worker not terminated), so replicas and restarts agree on it; a worker whose
monitoring was stopped by hand is paused in this process only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import BaseJobStore, JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from opentelemetry import trace

from cml_monitor.clock import Clock, utcnow
from cml_monitor.storage import CMLWorkerRepository, LeaseStore

from .collector import AwsClient, CmlClient, CollectionResult, FleetCollector
from .job import (
    JobDependencies,
    Observer,
    configure_job_dependencies,
    notify_observers,
    run_region_collection,
    run_worker_metrics_collection,
)
from .notifications import WorkerNotificationHandler

logger = logging.getLogger(__name__)

JOB_ID_PREFIX = "fleet-metrics:"
# Every interval trigger counts from here, so equal intervals fire at the same instants.
TRIGGER_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)


class AlignedIntervalTrigger(IntervalTrigger):
    """An interval trigger whose fire times are always anchor + k·interval.

    APScheduler's own interval trigger counts from the previous fire time, so a job first run
    at an odd instant keeps that offset for ever, and regions drift apart. This one snaps back
    to the grid.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            now = max(now, previous_fire_time + timedelta(microseconds=1))
        return super().get_next_fire_time(None, now)


def job_id_for_region(aws_region: str) -> str:
    return f"{JOB_ID_PREFIX}{aws_region}"


class WorkerMonitoringScheduler:
    """Starts, stops and tracks the monitoring of each worker."""

    def __init__(
        self,
        worker_repository: CMLWorkerRepository,
        aws_client: AwsClient,
        notification_handler: WorkerNotificationHandler | None = None,
        *,
        cml_client: CmlClient | None = None,
        job_store: BaseJobStore | None = None,
        background_task_scheduler: AsyncIOScheduler | None = None,
        poll_interval: int = 300,
        clock: Clock = utcnow,
        tracer: trace.Tracer | None = None,
        batch_window: float = 0.05,
        cml_concurrency: int = 100,
        observers: Sequence[Observer] = (),
        cycle_observer: Callable[[float], None] | None = None,
    ) -> None:
        if poll_interval < 1:
            raise ValueError("poll_interval must be at least 1 second")
        self.worker_repository = worker_repository
        self.poll_interval = poll_interval
        self._clock = clock
        self.collector = FleetCollector(
            worker_repository,
            aws_client,
            cml_client,
            clock=clock,
            tracer=tracer,
            batch_window=batch_window,
            cml_concurrency=cml_concurrency,
            cycle_observer=cycle_observer,
        )
        self._observers: list[Observer] = []
        if notification_handler is not None:
            self._observers.append(notification_handler)
        self._observers.extend(observers)
        self._scheduler = background_task_scheduler or AsyncIOScheduler(timezone=UTC)
        if job_store is not None:
            self._scheduler.add_jobstore(job_store, alias="default")
        self._active: dict[str, str] = {}  # worker id → region
        self._paused: set[str] = set()
        self._dependencies: JobDependencies | None = None
        self._started = False
        self._next_runs: tuple[float, dict[str, datetime | None]] = (0.0, {})
        self._leases = LeaseStore(worker_repository.engine)
        self._keep_awake: asyncio.Task[None] | None = None
        self.instance_id = uuid.uuid4().hex  # this replica, as lease holder

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started

    @property
    def active_worker_ids(self) -> frozenset[str]:
        return frozenset(self._active)

    def subscribe(self, observer: Observer) -> None:
        """Receive every metrics event (`observer(metrics_data)`, sync or async)."""
        self._observers.append(observer)

    async def start_async(self) -> None:
        """Start the scheduler and monitor every worker that is not terminated."""
        logger.info("Starting worker monitoring (every %d s)", self.poll_interval)
        self._dependencies = JobDependencies(self.collector, self, self._observers)
        configure_job_dependencies(self._dependencies)
        if not self._scheduler.running:
            self._scheduler.start()
        self._started = True
        if self._keep_awake is None:
            self._keep_awake = asyncio.get_running_loop().create_task(self._wake_periodically())
        stored = {job.id for job in self._scheduler.get_jobs() if job.id.startswith(JOB_ID_PREFIX)}
        monitorable = await self.worker_repository.list_monitorable_async()
        self._active = {
            worker_id: region for worker_id, region in monitorable if worker_id not in self._paused
        }
        regions = set(self._active.values())
        for region in sorted(regions):
            if job_id_for_region(region) not in stored:
                self._ensure_region_job(region, run_now=True)
        for job_id in stored - {job_id_for_region(r) for r in regions}:
            self._remove_job(job_id)  # its region has no worker left
        for worker_id in self._active:
            logger.debug("Started monitoring worker %s", worker_id)
        logger.info(
            "Worker monitoring started: %d workers in %d regions (%d region jobs resumed from the job store)",
            len(self._active),
            len(regions),
            len(stored & {job_id_for_region(r) for r in regions}),
        )

    async def _wake_periodically(self) -> None:
        """Look at the job store again every so often.

        APScheduler 3 sleeps until the next run time it knows of and never hears of jobs that
        another replica adds to a shared store; without this a replica started with no jobs
        would never take over a region.
        """
        period = min(30.0, max(0.5, self.poll_interval / 2))
        while True:
            await asyncio.sleep(period)
            if self._scheduler.running:
                self._scheduler.wakeup()

    async def stop_async(self, timeout: float = 30.0) -> None:
        """Stop: no new runs, let the collection in flight finish (or cancel it), shut down."""
        if not self._started:
            return
        if self._keep_awake is not None:
            self._keep_awake.cancel()
            await asyncio.gather(self._keep_awake, return_exceptions=True)
            self._keep_awake = None
        self._scheduler.pause()
        running = list(self._dependencies.running) if self._dependencies else []
        try:
            await asyncio.wait_for(self._finish(running), timeout)
        except TimeoutError:
            logger.warning("Collection still running after %.0f s - cancelling it", timeout)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        self._scheduler.shutdown(wait=False)
        self._started = False
        configure_job_dependencies(None)
        self._active.clear()
        logger.info("Worker monitoring stopped")

    async def _finish(self, running: list[asyncio.Task[Any]]) -> None:
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self.collector.drain()

    # -- region jobs -----------------------------------------------------------------------

    def _trigger(self) -> IntervalTrigger:
        return AlignedIntervalTrigger(seconds=self.poll_interval, start_date=TRIGGER_ANCHOR, timezone=UTC)

    def _ensure_region_job(self, region: str, *, run_now: bool = False) -> None:
        job_id = job_id_for_region(region)
        if self._scheduler.get_job(job_id) is not None:
            return
        options: dict[str, Any] = {}
        if run_now:
            options["next_run_time"] = self._clock()
        self._scheduler.add_job(
            run_region_collection,
            trigger=self._trigger(),
            args=[region],
            id=job_id,
            name=f"Collect metrics of the workers in {region}",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            **options,
        )
        self._next_runs = (0.0, {})

    def _remove_job(self, job_id: str) -> None:
        try:
            self._scheduler.remove_job(job_id)
        except JobLookupError:
            pass
        self._next_runs = (0.0, {})

    async def workers_to_collect(self, region: str) -> list[str]:
        """The region job's list: workers of the region not terminated nor paused here.

        Empty when another replica holds this region's lease for the current interval.
        """
        ttl = timedelta(seconds=max(1.0, self.poll_interval * 0.8))
        if not await self._leases.acquire(f"collect:{region}", self.instance_id, self._clock(), ttl):
            logger.info("Region %s is being collected by another replica - skipping this run", region)
            return []
        monitorable = await self.worker_repository.list_monitorable_async(region)
        ids = [worker_id for worker_id, _ in monitorable if worker_id not in self._paused]
        for worker_id in ids:
            self._active[worker_id] = region
        if not ids and not monitorable:
            logger.info("No worker left to monitor in %s - removing its job", region)
            self._remove_job(job_id_for_region(region))
        return ids

    # -- per worker ------------------------------------------------------------------------

    async def start_monitoring_worker_async(self, worker_id: str, *, run_now: bool = True) -> None:
        """Monitor the worker: collected at once (in the background), then with its region."""
        worker = await self.worker_repository.get_by_id_async(worker_id)
        if worker is None:
            logger.warning("Worker %s not found - not monitoring it", worker_id)
            return
        self._paused.discard(worker_id)
        self._active[worker_id] = worker.aws_region
        self._ensure_region_job(worker.aws_region)
        logger.info("Started monitoring worker %s", worker_id)
        if run_now and self._dependencies is not None:
            task = asyncio.get_running_loop().create_task(run_worker_metrics_collection(worker_id))
            self._dependencies.running.add(task)
            task.add_done_callback(self._dependencies.running.discard)

    async def stop_monitoring_worker_async(self, worker_id: str) -> None:
        region = self._active.pop(worker_id, None)
        worker = await self.worker_repository.get_by_id_async(worker_id)
        if worker is not None and not worker.is_terminated:
            self._paused.add(worker_id)  # still in the database, so remember it here
        if region is not None and region not in self._active.values() and self._started:
            if not await self.workers_to_collect(region):
                logger.debug("Region %s has no monitored worker left", region)
        logger.info("Stopped monitoring worker %s", worker_id)

    async def refresh_worker_async(self, worker_id: str) -> CollectionResult:
        """Collect one worker now, outside its schedule, and tell the observers."""
        result = await self.collector.collect(worker_id)
        if result.ok:
            await notify_observers(self._observers, result.metrics_data)
        return result

    # -- views -----------------------------------------------------------------------------

    def _region_next_runs(self) -> dict[str, datetime | None]:
        """Next run of each region job, cached for a second (the API asks per worker)."""
        fetched_at, runs = self._next_runs
        if time.monotonic() - fetched_at < 1.0:
            return runs
        runs = {
            job.id[len(JOB_ID_PREFIX) :]: job.next_run_time
            for job in self._scheduler.get_jobs()
            if job.id.startswith(JOB_ID_PREFIX)
        }
        self._next_runs = (time.monotonic(), runs)
        return runs

    def check_job_store(self) -> None:
        """Touch the job store for real (readiness); raises when it does not answer."""
        for store in self._scheduler._jobstores.values():
            store.get_next_run_time()

    def region_jobs(self) -> dict[str, datetime | None]:
        return dict(self._region_next_runs())

    def next_run_at(self, worker_id: str, aws_region: str | None = None) -> datetime | None:
        """When the worker is collected next; None when it is not monitored."""
        region = self._active.get(worker_id) or (aws_region if self._started else None)
        if region is None or worker_id in self._paused or not self._started:
            return None
        return self._region_next_runs().get(region)

    def monitoring_jobs(self) -> list[dict[str, Any]]:
        """The per-worker view: every monitored worker, its region's job and next run."""
        runs = self._region_next_runs()
        return [
            {"worker_id": worker_id, "job_id": job_id_for_region(region), "next_run_at": runs.get(region)}
            for worker_id, region in sorted(self._active.items())
            if region in runs
        ]
