"""`WorkerMonitoringScheduler`: which workers are monitored, and the schedule that collects them.

The database is the truth of what is monitored (every worker not terminated, minus those paused
here by hand); the schedule is derived from it: one persisted APScheduler job per AWS region
(`fleet-metrics:<region>`), re-created whenever the job store lost it, checked at start and at
every wake. APScheduler 3's job stores are synchronous, so the scheduler runs on its own thread
(`BackgroundScheduler`) and every job-store call this class makes from the event loop goes to
one thread of its own, with a deadline: a slow or dead Redis never stalls the loop, never
takes the threads other work needs, and never holds up an API request — requests are answered
from the view kept in memory, which the background refreshes (and marks stale when it cannot).

One job per region rather than per worker (measured): APScheduler writes every job back to its
store each time it runs, and 10,000 per-worker jobs cost seconds of store writes per cycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import BaseJobStore, JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from opentelemetry import trace

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain.collections import TRIGGER_ANCHOR
from cml_monitor.domain.idle import IdlePolicy

from .collector import CollectionReport, FleetCollector, MetricsSource
from .job import RUNNERS, run_region_collection
from .monitor import FleetMonitor, MonitoredWorkers, OutcomeListener, RegionRun
from .notifications import WorkerNotificationHandler
from .observers import EventObserver, ObserverPublisher, SeedObserver
from .ports import AwsClient, CmlClient, RegionLeases, WorkerStore

logger = logging.getLogger(__name__)

JOB_ID_PREFIX = "fleet-metrics:"


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
        worker_repository: WorkerStore,
        aws_client: AwsClient,
        notification_handler: WorkerNotificationHandler | None = None,
        *,
        cml_client: CmlClient | None = None,
        job_store: BaseJobStore | None = None,
        background_task_scheduler: BaseScheduler | None = None,
        leases: RegionLeases | None = None,
        poll_interval: int = 300,
        clock: Clock = utcnow,
        tracer: trace.Tracer | None = None,
        cml_concurrency: int = 100,
        licensing_interval: float = 3600.0,
        activity_interval: float = 600.0,
        idle_policy: IdlePolicy | None = None,
        metrics_source: MetricsSource = "auto",
        observers: Sequence[EventObserver | SeedObserver] = (),
        observer_timeout: float = 60.0,
        on_observer_failure: Callable[[str], None] | None = None,
        cycle_observer: Callable[[float], None] | None = None,
        outcome_listeners: Sequence[OutcomeListener] = (),
        instance_id: str | None = None,
    ) -> None:
        if poll_interval < 1:
            raise ValueError("poll_interval must be at least 1 second")
        self.worker_repository = worker_repository
        self.poll_interval = poll_interval
        self._clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex  # this replica, as lease holder
        self.monitored = MonitoredWorkers()
        self.collector = collector = FleetCollector(
            worker_repository,
            aws_client,
            cml_client,
            clock=clock,
            tracer=tracer,
            cml_concurrency=cml_concurrency,
            licensing_interval=licensing_interval,
            activity_interval=activity_interval,
            idle_policy=idle_policy,
            cycle_observer=cycle_observer,
            metrics_source=metrics_source,
        )
        publisher = ObserverPublisher(
            [*([notification_handler] if notification_handler else []), *observers],
            timeout=observer_timeout,
            on_failure=on_observer_failure,
        )
        self.monitor = FleetMonitor(
            worker_repository,
            collector,
            publisher,
            self.monitored,
            leases=leases,
            holder=self.instance_id,
            poll_interval=poll_interval,
            clock=clock,
            outcome_listeners=outcome_listeners,
        )
        self._scheduler = background_task_scheduler or BackgroundScheduler(timezone=UTC)
        if job_store is not None:
            self._scheduler.add_jobstore(job_store, alias="default")
        self._started = False
        self._closed = False
        self._runs: dict[str, datetime | None] = {}
        self._runs_read_at = 0.0
        self.view_error: str | None = None  # why the last read of the job store failed
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="job-store")
        self._running: set[asyncio.Task[Any]] = set()
        self._keep_awake: asyncio.Task[None] | None = None
        self.schedule_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started

    @property
    def active_worker_ids(self) -> frozenset[str]:
        return self.monitored.ids

    async def start_async(self) -> None:
        """Start the scheduler and monitor every worker that is not terminated."""
        if self._closed:
            raise RuntimeError("monitoring was stopped; it does not start again")
        logger.info("Starting worker monitoring (every %d s)", self.poll_interval)
        RUNNERS.install(self, asyncio.get_running_loop())
        if not self._scheduler.running:
            await asyncio.to_thread(self._scheduler.start)
        regions, resumed = await self.reconcile()
        self._started = True
        if self._keep_awake is None:
            self._keep_awake = asyncio.get_running_loop().create_task(self._wake_periodically())
        logger.info(
            "Worker monitoring started: %d workers in %d regions (%d region jobs resumed from the job store)",
            len(self.monitored.ids),
            len(regions),
            resumed,
        )

    async def reconcile(self) -> tuple[set[str], int]:
        """Derive the schedule from the database: a job per region with workers, no other.

        Returns the regions and how many of their jobs were already in the store. A job the
        store lost (Redis restarted empty, say) is added back and runs at once.
        """
        monitorable = await self.worker_repository.list_monitorable_async()
        self.monitored.replace(monitorable)
        regions = self.monitored.regions()
        stored = await self._in_store(self._stored_regions)
        for region in sorted(regions - stored):
            if self._started:
                logger.warning("The job of region %s was missing from the job store - adding it back", region)
            await self._in_store(self._add_region_job, region, True)
        for region in stored - regions:
            await self._in_store(self._remove_region_job, region)
        await self._read_runs(force=True)
        self.schedule_error = None
        return regions, len(stored & regions)

    async def _wake_periodically(self) -> None:
        """Reconcile every so often: another replica's changes, a job store that lost its jobs."""
        period = min(30.0, max(0.5, self.poll_interval / 2))
        while True:
            await asyncio.sleep(period)
            try:
                await self.reconcile()
                if self._scheduler.running:
                    self._scheduler.wakeup()
            except Exception as exc:
                self.schedule_error = self.view_error = f"{type(exc).__name__}: {exc}"
                logger.error("Could not check the schedule against the database: %s", exc)

    async def stop_async(self, timeout: float = 30.0) -> None:
        """Stop: no new runs, let the collection in flight finish (or cancel it), shut down.

        Also after a start that failed half-way (the job store was down): APScheduler's thread
        may be running even though monitoring never started, and it must not outlive us.
        """
        was_started, self._started = self._started, False
        self._closed = True  # a start retried in the background must not bring it back
        if self._keep_awake is not None:
            self._keep_awake.cancel()
            await asyncio.gather(self._keep_awake, return_exceptions=True)
            self._keep_awake = None
        if self._scheduler.running:
            await asyncio.to_thread(self._scheduler.pause)
        running = list(self._running)
        if running:
            _done, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                logger.warning("Collection still running after %.0f s - cancelling it", timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self._scheduler.running:
            await asyncio.to_thread(self._scheduler.shutdown, False)
        RUNNERS.uninstall(self)
        self._store_thread.shutdown(wait=False, cancel_futures=True)
        if was_started:
            logger.info("Worker monitoring stopped")

    # -- running ---------------------------------------------------------------------------

    async def run_region(self, aws_region: str) -> RegionRun:
        """One region's collection (called by the region's job)."""
        run = await self._track(self.monitor.run_region(aws_region))
        if not run.skipped and aws_region not in self.monitored.regions():
            logger.info("No worker left to monitor in %s - removing its job", aws_region)
            await self._in_store(self._remove_region_job, aws_region)
        await self.refresh_view(force=True)  # the job's next run moved on
        return run

    def collect_soon(self, worker_id: str) -> asyncio.Task[CollectionReport]:
        """Start collecting one worker now, outside its schedule (tracked until it ends)."""
        return self._track(self.monitor.collect([worker_id]))

    async def refresh_worker_async(self, worker_id: str) -> CollectionReport:
        """Collect one worker now, outside its schedule, and tell the observers."""
        return await self.collect_soon(worker_id)

    async def drain(self) -> None:
        """Wait for the collections in flight (a refresh after a start/stop, a region run)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def _track(self, coroutine: Any) -> asyncio.Task[Any]:
        """A collection as a task the scheduler knows of: `drain()` and `stop_async()` wait for it."""
        task = asyncio.ensure_future(coroutine)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    # -- per worker ------------------------------------------------------------------------

    async def start_monitoring_worker_async(self, worker_id: str, *, run_now: bool = True) -> None:
        """Monitor the worker: collected at once (in the background), then with its region."""
        worker = await self.worker_repository.get_by_id_async(worker_id)
        if worker is None:
            logger.warning("Worker %s not found - not monitoring it", worker_id)
            return
        self.monitored.add(worker_id, worker.aws_region)
        if worker.aws_region not in self._runs:
            try:
                await self._in_store(self._add_region_job, worker.aws_region, False, timeout=1.0)
                await self._read_runs(force=True)
            except Exception as exc:  # the next wake adds the job from the database
                logger.warning(
                    "Could not add the job of %s now (%s); it is added at the next check",
                    worker.aws_region,
                    exc,
                )
        logger.info("Started monitoring worker %s", worker_id)
        if run_now and self._started:
            self.collect_soon(worker_id)

    async def stop_monitoring_worker_async(self, worker_id: str) -> None:
        worker = await self.worker_repository.get_by_id_async(worker_id)
        if worker is not None and not worker.is_terminated:
            self.monitored.pause(worker_id)  # still in the database, so remember it here
        else:
            self.monitored.forget(worker_id)
        logger.info("Stopped monitoring worker %s", worker_id)

    # -- the job store (called on its own thread) -----------------------------------------

    async def _in_store(self, call: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run a job-store call on the job store's thread, giving up after `timeout` seconds."""
        future = asyncio.get_running_loop().run_in_executor(self._store_thread, call, *args)
        return await asyncio.wait_for(future, timeout)

    def _stored_regions(self) -> set[str]:
        return {
            job.id[len(JOB_ID_PREFIX) :]
            for job in self._scheduler.get_jobs()
            if job.id.startswith(JOB_ID_PREFIX)
        }

    def _add_region_job(self, region: str, run_now: bool) -> None:
        options: dict[str, Any] = {"next_run_time": self._clock()} if run_now else {}
        self._scheduler.add_job(
            run_region_collection,
            trigger=AlignedIntervalTrigger(
                seconds=self.poll_interval, start_date=TRIGGER_ANCHOR, timezone=UTC
            ),
            args=[region],
            id=job_id_for_region(region),
            name=f"Collect metrics of the workers in {region}",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            **options,
        )

    def _remove_region_job(self, region: str) -> None:
        try:
            self._scheduler.remove_job(job_id_for_region(region))
        except JobLookupError:
            pass

    def overdue_regions(self, now: datetime) -> list[str]:
        """Regions whose runs stopped working (no run completed for two intervals): our fault."""
        limit = timedelta(seconds=2 * self.poll_interval)
        completed = self.monitor.completed_at
        return sorted(
            r for r in self.monitored.regions() if (done := completed.get(r)) is None or now - done > limit
        )

    def schedule_problem(self) -> str | None:
        """What is wrong with the schedule, from memory (readiness never waits on the store).

        The monitored regions come from the last check against the database, the jobs from the
        last read of the job store; the background refreshes both.
        """
        if self.schedule_error is not None:
            return self.schedule_error
        missing = sorted(self.monitored.regions() - set(self._runs))
        return f"no job for {', '.join(missing)}" if missing else None

    async def check_job_store(self, timeout: float = 3.0) -> None:
        """Touch the job store for real (readiness); raises when it does not answer in time."""
        await self._in_store(self._scheduler.get_jobs, timeout=timeout)

    # -- views -----------------------------------------------------------------------------

    async def _read_runs(self, *, force: bool = False) -> dict[str, datetime | None]:
        """Next run of each region job, read off the loop and kept for a second."""
        if force or time.monotonic() - self._runs_read_at >= 1.0:
            jobs = await self._in_store(self._scheduler.get_jobs)
            self._runs = {
                job.id[len(JOB_ID_PREFIX) :]: job.next_run_time
                for job in jobs
                if job.id.startswith(JOB_ID_PREFIX)
            }
            self._runs_read_at = time.monotonic()
        return self._runs

    async def refresh_view(self, *, force: bool = False) -> None:
        """Bring the next-run view up to date; a job store that fails keeps the last view (stale)."""
        try:
            await self._read_runs(force=force)
        except Exception as exc:
            if self.view_error is None:
                logger.error("Could not read the job store: %r", exc)
            self.view_error = f"{type(exc).__name__}: {exc}"
        else:
            self.view_error = None

    async def jobs_view(self) -> tuple[list[dict[str, Any]], bool]:
        """The per-worker view and whether it is stale, from memory (never the job store)."""
        return self.monitoring_jobs(), self.view_stale

    @property
    def view_stale(self) -> bool:
        """Whether the next-run view is older than the job store (the store could not be read)."""
        return self.view_error is not None

    def region_jobs(self) -> dict[str, datetime | None]:
        return dict(self._runs)

    def next_run_at(self, worker_id: str, aws_region: str | None = None) -> datetime | None:
        """When the worker is collected next; None when it is not monitored."""
        if not self._started or self.monitored.is_paused(worker_id):
            return None
        region = self.monitored.region_of(worker_id) or aws_region
        return None if region is None else self._runs.get(region)

    def monitoring_jobs(self) -> list[dict[str, Any]]:
        """The per-worker view: every monitored worker, its region's job and next run."""
        return [
            {
                "worker_id": worker_id,
                "job_id": job_id_for_region(region),
                "next_run_at": self._runs.get(region),
            }
            for worker_id, region in self.monitored.items()
            if region in self._runs
        ]
