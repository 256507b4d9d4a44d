"""`WorkerMonitoringScheduler`: which workers are monitored, and the schedule that collects them.

The database is the truth of what is monitored (every worker not terminated, minus those paused
here by hand); the schedule is derived from it: one persisted APScheduler job per AWS region
(`RegionJobs`), re-created whenever the job store lost it, checked at start and at every wake.
The scheduler only schedules: the region's job calls `run_job`, which hands the run to the
`FleetMonitor` (which owns runs and the collections in flight) and then keeps the schedule up
to date. Requests are answered from the view kept in memory, which the background refreshes
(and marks stale when it cannot).

One job per region rather than per worker (measured): APScheduler writes every job back to its
store each time it runs, and 10,000 per-worker jobs cost seconds of store writes per cycle.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from .job import RUNNERS
from .monitor import FleetMonitor, MonitoredWorkers, RegionRun
from .ports import WorkerStore
from .region_jobs import JOB_ID_PREFIX, RegionJobs, job_id_for_region

logger = logging.getLogger(__name__)

__all__ = ["JOB_ID_PREFIX", "WorkerMonitoringScheduler", "job_id_for_region"]


class WorkerMonitoringScheduler:
    """Keeps one job per region with monitored workers, and runs the monitor when one is due."""

    def __init__(
        self,
        monitor: FleetMonitor,
        monitored: MonitoredWorkers,
        worker_repository: WorkerStore,
        jobs: RegionJobs,
        *,
        poll_interval: int = 300,
    ) -> None:
        if poll_interval < 1:
            raise ValueError("poll_interval must be at least 1 second")
        self._monitor = monitor
        self._monitored = monitored
        self._workers = worker_repository
        self._jobs = jobs
        self.poll_interval = poll_interval
        self._started = False
        self._closed = False
        self._keep_awake: asyncio.Task[None] | None = None
        self.view_error: str | None = None  # why the last read of the job store failed
        self.schedule_error: str | None = None  # why the last check against the database failed

    @property
    def running(self) -> bool:
        return self._started

    async def start_async(self) -> None:
        """Start the scheduler and monitor every worker that is not terminated."""
        if self._closed:
            raise RuntimeError("monitoring was stopped; it does not start again")
        logger.info("Starting worker monitoring (every %d s)", self.poll_interval)
        RUNNERS.install(self, asyncio.get_running_loop())
        await self._jobs.start()
        regions, resumed = await self.reconcile()
        self._started = True
        if self._keep_awake is None:
            self._keep_awake = asyncio.get_running_loop().create_task(self._wake_periodically())
        logger.info(
            "Worker monitoring started: %d workers in %d regions (%d region jobs resumed from the job store)",
            len(self._monitored.ids),
            len(regions),
            resumed,
        )

    async def start_retrying(self, delay: float = 5.0) -> None:
        """`start_async()` again every `delay` seconds until it works or monitoring is stopped
        (the job store may be down at boot: the replica serves anyway and reports not ready)."""
        while True:
            await asyncio.sleep(delay)
            try:
                await self.start_async()
            except RuntimeError:
                return  # stopped meanwhile
            except Exception as exc:
                logger.error("Worker monitoring still cannot start: %s", exc)
                continue
            logger.info("Worker monitoring started after retrying")
            return

    async def reconcile(self) -> tuple[set[str], int]:
        """Derive the schedule from the database: a job per region with workers, no other.

        Returns the regions and how many of their jobs were already in the store. A job the
        store lost (Redis restarted empty, say) is added back and runs at once.
        """
        self._monitored.replace(await self._workers.list_monitorable_async())
        regions = self._monitored.regions()
        stored = await self._jobs.stored()
        for region in sorted(regions - stored):
            if self._started:
                logger.warning("The job of region %s was missing from the job store - adding it back", region)
            await self._jobs.add(region, run_now=True)
        for region in stored - regions:
            await self._jobs.remove(region)
        await self._jobs.read_runs(force=True)
        self.schedule_error = None
        return regions, len(stored & regions)

    async def _wake_periodically(self) -> None:
        """Reconcile every so often: another replica's changes, a job store that lost its jobs."""
        period = min(30.0, max(0.5, self.poll_interval / 2))
        while True:
            await asyncio.sleep(period)
            try:
                await self.reconcile()
                self._jobs.wakeup()
            except Exception as exc:
                self.schedule_error = self.view_error = f"{type(exc).__name__}: {exc}"
                logger.error("Could not check the schedule against the database: %s", exc)

    async def stop_async(self, timeout: float = 30.0) -> None:
        """Stop: no new runs, let the monitor finish (or cancel) what is in flight, shut down.

        Also after a start that failed half-way (the job store was down): APScheduler's thread
        may be running even though monitoring never started, and it must not outlive us.
        """
        was_started, self._started = self._started, False
        self._closed = True  # a start retried in the background must not bring it back
        if self._keep_awake is not None:
            self._keep_awake.cancel()
            await asyncio.gather(self._keep_awake, return_exceptions=True)
            self._keep_awake = None
        await self._jobs.pause()
        await self._monitor.stop(timeout)
        await self._jobs.shutdown()
        RUNNERS.uninstall(self)
        if was_started:
            logger.info("Worker monitoring stopped")

    async def run_job(self, aws_region: str) -> RegionRun:
        """What the region's job does: the monitor's run, then the schedule's upkeep."""
        run = await self._monitor.run_region(aws_region)
        if not run.skipped and aws_region not in self._monitored.regions():
            logger.info("No worker left to monitor in %s - removing its job", aws_region)
            await self._jobs.remove(aws_region)
        await self.refresh_view(force=True)  # the job's next run moved on
        return run

    async def start_monitoring_worker_async(self, worker_id: str, *, run_now: bool = True) -> None:
        """Monitor the worker: collected at once (in the background), then with its region."""
        worker = await self._workers.get_by_id_async(worker_id)
        if worker is None:
            logger.warning("Worker %s not found - not monitoring it", worker_id)
            return
        self._monitored.add(worker_id, worker.aws_region)
        if worker.aws_region not in self._jobs.runs:
            try:
                await self._jobs.add(worker.aws_region, run_now=False, timeout=1.0)
                await self._jobs.read_runs(force=True)
            except Exception as exc:  # the next wake adds the job from the database
                logger.warning(
                    "Could not add the job of %s now (%s); it is added at the next check",
                    worker.aws_region,
                    exc,
                )
        logger.info("Started monitoring worker %s", worker_id)
        if run_now and self._started:
            self._monitor.collect_soon(worker_id)

    async def stop_monitoring_worker_async(self, worker_id: str) -> None:
        worker = await self._workers.get_by_id_async(worker_id)
        if worker is not None and not worker.is_terminated:
            self._monitored.pause(worker_id)  # still in the database, so remember it here
        else:
            self._monitored.forget(worker_id)
        logger.info("Stopped monitoring worker %s", worker_id)

    # -- readiness and views, from memory ------------------------------------------------------

    def schedule_problem(self) -> str | None:
        """What is wrong with the schedule, from memory (readiness never waits on the store).

        The monitored regions come from the last check against the database, the jobs from the
        last read of the job store; the background refreshes both.
        """
        if self.schedule_error is not None:
            return self.schedule_error
        missing = sorted(self._monitored.regions() - set(self._jobs.runs))
        return f"no job for {', '.join(missing)}" if missing else None

    async def check_job_store(self, timeout: float = 3.0) -> None:
        """Touch the job store for real (readiness); raises when it does not answer in time."""
        await self._jobs.touch(timeout)

    async def refresh_view(self, *, force: bool = False) -> None:
        """Bring the next-run view up to date; a job store that fails keeps the last view (stale)."""
        try:
            await self._jobs.read_runs(force=force)
        except Exception as exc:
            if self.view_error is None:
                logger.error("Could not read the job store: %r", exc)
            self.view_error = f"{type(exc).__name__}: {exc}"
        else:
            self.view_error = None

    @property
    def view_stale(self) -> bool:
        """Whether the next-run view is older than the job store (the store could not be read)."""
        return self.view_error is not None

    def next_run_at(self, worker_id: str, aws_region: str | None = None) -> datetime | None:
        """When the worker is collected next; None when it is not monitored."""
        if not self._started or self._monitored.is_paused(worker_id):
            return None
        region = self._monitored.region_of(worker_id) or aws_region
        return None if region is None else self._jobs.runs.get(region)

    def region_runs(self) -> dict[str, datetime | None]:
        """Each scheduled region's next run (what `serve`'s collector child tells the API)."""
        return dict(self._jobs.runs)

    def monitoring_jobs(self) -> list[dict[str, Any]]:
        """The per-worker view: every monitored worker, its region's job and next run."""
        runs = self._jobs.runs
        return [
            {"worker_id": worker_id, "job_id": job_id_for_region(region), "next_run_at": runs.get(region)}
            for worker_id, region in self._monitored.items()
            if region in runs
        ]

    async def jobs_view(self) -> tuple[list[dict[str, Any]], bool]:
        """The per-worker view and whether it is stale, from memory (never the job store); async
        because the supervised API's stand-in asks the collector process for it."""
        return self.monitoring_jobs(), self.view_stale
