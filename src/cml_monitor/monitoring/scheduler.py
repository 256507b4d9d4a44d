"""`WorkerMonitoringScheduler`: which workers are monitored, and the APScheduler that runs them.

Every worker has one persisted interval job with a fixed id (`worker-metrics:<id>`). All jobs
share one anchored interval trigger, so the jobs of a fleet fall due at the same instants and
the collector batches them into a handful of AWS calls; a newly registered worker runs at
once, then joins the common beat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import BaseJobStore, JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from opentelemetry import trace

from cml_monitor.clock import Clock, utcnow
from cml_monitor.storage import CMLWorkerRepository

from .collector import AwsClient, CmlClient, CollectionResult, FleetCollector
from .job import (
    JobDependencies,
    Observer,
    configure_job_dependencies,
    notify_observers,
    run_worker_metrics_collection,
)
from .notifications import WorkerNotificationHandler

logger = logging.getLogger(__name__)

JOB_ID_PREFIX = "worker-metrics:"
# Every interval trigger counts from here, so equal intervals fire at the same instants.
TRIGGER_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)


class AlignedIntervalTrigger(IntervalTrigger):
    """An interval trigger whose fire times are always anchor + k·interval.

    APScheduler's own interval trigger counts from the previous fire time, so a job first run
    at an odd instant (a worker registered at 10:03:17.412) keeps that offset for ever, and
    the fleet's jobs drift apart into many small AWS batches. This one snaps back to the grid.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            now = max(now, previous_fire_time + timedelta(microseconds=1))
        return super().get_next_fire_time(None, now)


def job_id_for(worker_id: str) -> str:
    return f"{JOB_ID_PREFIX}{worker_id}"


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
        self._active: set[str] = set()
        self._dependencies: JobDependencies | None = None
        self._started = False

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
        stored = {job.id for job in self._scheduler.get_jobs() if job.id.startswith(JOB_ID_PREFIX)}
        wanted = await self.worker_repository.list_monitorable_ids_async()
        for worker_id in wanted:
            if job_id_for(worker_id) in stored:
                self._active.add(worker_id)  # resumed from the job store as it was
            else:
                await self.start_monitoring_worker_async(worker_id)
        for job_id in stored - {job_id_for(w) for w in wanted}:
            self._remove_job(job_id)  # its worker was removed or terminated while we were down
        logger.info(
            "Worker monitoring started: %d workers (%d resumed from the job store)",
            len(self._active),
            len(stored & {job_id_for(w) for w in wanted}),
        )

    async def stop_async(self, timeout: float = 30.0) -> None:
        """Stop: no new runs, let the collection in flight finish (or cancel it), shut down."""
        if not self._started:
            return
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
        await self.collector.drain()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    # -- per worker ------------------------------------------------------------------------

    def _trigger(self) -> IntervalTrigger:
        return AlignedIntervalTrigger(seconds=self.poll_interval, start_date=TRIGGER_ANCHOR, timezone=UTC)

    async def start_monitoring_worker_async(self, worker_id: str, *, run_now: bool = True) -> None:
        """(Re)start a worker's job; it runs at once, then every interval with the fleet."""
        options: dict[str, Any] = {}
        if run_now:
            options["next_run_time"] = self._clock()
        self._scheduler.add_job(
            run_worker_metrics_collection,
            trigger=self._trigger(),
            args=[worker_id],
            id=job_id_for(worker_id),
            name=f"Collect metrics of worker {worker_id}",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            **options,
        )
        self._active.add(worker_id)
        logger.info("Started monitoring worker %s", worker_id)

    async def stop_monitoring_worker_async(self, worker_id: str) -> None:
        self._remove_job(job_id_for(worker_id))
        self._active.discard(worker_id)
        logger.info("Stopped monitoring worker %s", worker_id)

    def _remove_job(self, job_id: str) -> None:
        try:
            self._scheduler.remove_job(job_id)
        except JobLookupError:
            pass

    async def refresh_worker_async(self, worker_id: str) -> CollectionResult:
        """Collect one worker now, outside its schedule, and tell the observers."""
        result = await self.collector.collect(worker_id)
        if result.ok:
            await notify_observers(self._observers, result.metrics_data)
        return result

    # -- views -----------------------------------------------------------------------------

    def monitoring_jobs(self) -> list[dict[str, Any]]:
        """Every worker job in the store: worker id, job id and next run time."""
        jobs = []
        for job in self._scheduler.get_jobs():
            if job.id.startswith(JOB_ID_PREFIX):
                jobs.append(
                    {
                        "worker_id": job.id[len(JOB_ID_PREFIX) :],
                        "job_id": job.id,
                        "next_run_at": job.next_run_time,
                    }
                )
        return jobs

    def next_run_at(self, worker_id: str) -> datetime | None:
        job = self._scheduler.get_job(job_id_for(worker_id))
        return job.next_run_time if job is not None else None
