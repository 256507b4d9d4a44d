"""`RegionJobs`: the region jobs in APScheduler's job store, reached off the event loop.

One persisted job per AWS region (`fleet-metrics:<region>`) on an aligned interval trigger.
APScheduler 3's job stores are synchronous, so APScheduler runs on its own thread
(`BackgroundScheduler`) and every job-store call made from the event loop goes to one thread of
its own, with a deadline: a slow or dead Redis never stalls the loop and never takes the
threads other work needs. The next run of each region is kept in memory (`runs`), so readers
never wait on the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import BaseJobStore, JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from cml_monitor.clock import Clock
from cml_monitor.domain.collections import TRIGGER_ANCHOR

from .job import run_region_collection

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


class RegionJobs:
    """Adds, removes and reads the region jobs; every call has a deadline and runs off the loop."""

    def __init__(self, job_store: BaseJobStore | None, *, poll_interval: int, clock: Clock) -> None:
        self._scheduler = BackgroundScheduler(timezone=UTC)
        if job_store is not None:
            self._scheduler.add_jobstore(job_store, alias="default")
        self._poll_interval = poll_interval
        self._clock = clock
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="job-store")
        self.runs: dict[str, datetime | None] = {}  # region → next run, as last read
        self._runs_read_at = 0.0

    # -- APScheduler's own thread ------------------------------------------------------------

    async def start(self) -> None:
        if not self._scheduler.running:
            await asyncio.to_thread(self._scheduler.start)

    async def pause(self) -> None:
        if self._scheduler.running:
            await asyncio.to_thread(self._scheduler.pause)

    async def shutdown(self) -> None:
        if self._scheduler.running:
            await asyncio.to_thread(self._scheduler.shutdown, False)
        self._thread.shutdown(wait=False, cancel_futures=True)

    def wakeup(self) -> None:
        """Let APScheduler look at the store again now (a job added by another replica)."""
        if self._scheduler.running:
            self._scheduler.wakeup()

    # -- the job store, on its own thread -----------------------------------------------------

    async def stored(self) -> set[str]:
        """The regions that have a job in the store."""
        return await self._call(self._stored_regions)

    async def add(self, region: str, *, run_now: bool, timeout: float = 10.0) -> None:
        await self._call(self._add, region, run_now, timeout=timeout)

    async def remove(self, region: str) -> None:
        await self._call(self._remove, region)

    async def touch(self, timeout: float = 3.0) -> None:
        """Read the store for real (readiness); raises when it does not answer in time."""
        await self._call(self._scheduler.get_jobs, timeout=timeout)

    async def read_runs(self, *, force: bool = False) -> dict[str, datetime | None]:
        """Next run of each region job, read off the loop and kept for a second."""
        if force or time.monotonic() - self._runs_read_at >= 1.0:
            jobs = await self._call(self._scheduler.get_jobs)
            self.runs = {
                job.id[len(JOB_ID_PREFIX) :]: job.next_run_time
                for job in jobs
                if job.id.startswith(JOB_ID_PREFIX)
            }
            self._runs_read_at = time.monotonic()
        return self.runs

    async def _call(self, call: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        future = asyncio.get_running_loop().run_in_executor(self._thread, call, *args)
        async with asyncio.timeout(timeout):
            return await future

    def _stored_regions(self) -> set[str]:
        return {
            job.id[len(JOB_ID_PREFIX) :]
            for job in self._scheduler.get_jobs()
            if job.id.startswith(JOB_ID_PREFIX)
        }

    def _add(self, region: str, run_now: bool) -> None:
        options: dict[str, Any] = {"next_run_time": self._clock()} if run_now else {}
        self._scheduler.add_job(
            run_region_collection,
            trigger=AlignedIntervalTrigger(
                seconds=self._poll_interval, start_date=TRIGGER_ANCHOR, timezone=UTC
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

    def _remove(self, region: str) -> None:
        try:
            self._scheduler.remove_job(job_id_for_region(region))
        except JobLookupError:
            pass
