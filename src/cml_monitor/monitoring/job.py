"""`WorkerMetricsCollectionJob`: the persisted job that collects one region every interval.

The job store keeps only a reference to `run_region_collection` and a region name, never a
client or a connection. APScheduler calls that function by name on one of its worker threads
(so no job-store I/O ever runs on the event loop); it finds the running monitor in
`RUNNERS`, which the scheduler fills when it starts and empties when it stops, re-injects it
into a `WorkerMetricsCollectionJob` (`configure()`), and runs the job on the monitor's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Protocol

logger = logging.getLogger(__name__)


class RegionRunner(Protocol):
    async def run_job(self, aws_region: str) -> object:
        """One region's run and the schedule's upkeep after it (`WorkerMonitoringScheduler`)."""
        ...


class RunnerRegistry:
    """The monitor that jobs loaded from the store run on, and its event loop (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: tuple[RegionRunner, asyncio.AbstractEventLoop] | None = None

    def install(self, runner: RegionRunner, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._current = (runner, loop)

    def uninstall(self, runner: RegionRunner) -> None:
        with self._lock:
            if self._current is not None and self._current[0] is runner:
                self._current = None

    def current(self) -> tuple[RegionRunner, asyncio.AbstractEventLoop] | None:
        with self._lock:
            return self._current


RUNNERS = RunnerRegistry()


class WorkerMetricsCollectionJob:
    """Collects every monitored worker of one region (through the injected runner)."""

    def __init__(self, aws_region: str) -> None:
        self.aws_region = aws_region
        self._runner: RegionRunner | None = None

    def configure(self, *, runner: RegionRunner) -> WorkerMetricsCollectionJob:
        """Re-inject the services (the seed's `configure`): jobs keep ids, never clients."""
        self._runner = runner
        return self

    async def run(self) -> None:
        """One run of the region (the trigger, not this method, makes it periodic)."""
        if self._runner is None:
            raise RuntimeError("WorkerMetricsCollectionJob.configure() was not called")
        await self._runner.run_job(self.aws_region)


def run_region_collection(aws_region: str) -> None:
    """The function the job store references; runs on an APScheduler worker thread.

    It waits for the region run to end, so APScheduler's `max_instances=1` keeps one run of a
    region at a time, and gives up when the monitor's loop stops under it.
    """
    installed = RUNNERS.current()
    if installed is None:
        logger.error("Job for region %s ran before monitoring was configured; skipped", aws_region)
        return
    runner, loop = installed
    job = WorkerMetricsCollectionJob(aws_region).configure(runner=runner)
    try:
        future = asyncio.run_coroutine_threadsafe(job.run(), loop)
    except RuntimeError:  # the loop is closed
        return
    while True:
        try:
            future.result(timeout=1.0)
            return
        except concurrent.futures.TimeoutError:
            if loop.is_closed() or not loop.is_running():
                future.cancel()
                return
        except concurrent.futures.CancelledError:
            logger.info("Collection of %s cancelled", aws_region)
            return
        except Exception:
            logger.exception("❌ Failed to collect metrics for the workers in %s", aws_region)
            return
