"""`WorkerMetricsCollectionJob` (one worker's collection) and the job functions that run it.

The job store persists only a reference to `run_region_collection` and a region name: never a
client or a connection. When the job runs (also after a restart, when it comes back from Redis
or the database), it builds a `WorkerMetricsCollectionJob` per worker of the region and
re-injects the services through `configure()` from the dependencies the running scheduler
registered; the whole region is collected in one batch and each job handles its own worker's
outcome (missing or terminated: monitoring stops; a failure: logged, retried next interval).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cml_monitor.domain import WorkerStatus

from .collector import CollectionResult, FleetCollector

if TYPE_CHECKING:
    from .scheduler import WorkerMonitoringScheduler

logger = logging.getLogger(__name__)

Observer = Callable[[dict[str, Any]], Any]


@dataclass
class JobDependencies:
    """What a job needs at run time; registered by the scheduler when it starts."""

    collector: FleetCollector
    scheduler: WorkerMonitoringScheduler
    observers: list[Observer]
    running: set[asyncio.Task[Any]] = field(default_factory=set)


_dependencies: JobDependencies | None = None


def configure_job_dependencies(dependencies: JobDependencies | None) -> None:
    global _dependencies
    _dependencies = dependencies


def current_job_dependencies() -> JobDependencies | None:
    return _dependencies


async def notify_observers(observers: Sequence[Observer], metrics_data: dict[str, Any]) -> None:
    """Call each observer; one that fails is logged and never stops the others."""
    for observer in observers:
        try:
            outcome = observer(metrics_data)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception(
                "Observer %r failed on the metrics of %s", observer, metrics_data.get("worker_id")
            )


class WorkerMetricsCollectionJob:
    """Collects one worker's metrics every interval (through the shared batch collector)."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._collector: FleetCollector | None = None
        self._scheduler: WorkerMonitoringScheduler | None = None
        self._observers: list[Observer] = []

    def configure(
        self,
        *,
        collector: FleetCollector,
        scheduler: WorkerMonitoringScheduler,
        observers: Sequence[Observer] = (),
    ) -> WorkerMetricsCollectionJob:
        """Re-inject the services (the seed's `configure`): jobs keep ids, never clients."""
        self._collector = collector
        self._scheduler = scheduler
        self._observers = list(observers)
        return self

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    async def run_every(self) -> None:
        if self._collector is None or self._scheduler is None:
            raise RuntimeError("WorkerMetricsCollectionJob.configure() was not called")
        result = await self._collector.collect(self.worker_id)
        await self.handle(result)

    async def handle(self, result: CollectionResult) -> None:
        """The seed's per-worker outcome: missing or terminated stops, a failure is logged."""
        assert self._scheduler is not None
        if not result.found:
            logger.warning("Worker %s not found - stopping job", self.worker_id)
            await self._scheduler.stop_monitoring_worker_async(self.worker_id)
            return
        if result.error is not None:
            logger.error("❌ Failed to collect metrics for worker %s: %s", self.worker_id, result.error)
            return
        await notify_observers(self._observers, result.metrics_data)
        if result.status is WorkerStatus.TERMINATED:
            logger.info("Worker %s is terminated - stopping its monitoring", self.worker_id)
            await self._scheduler.stop_monitoring_worker_async(self.worker_id)


async def run_region_collection(aws_region: str) -> None:
    """The function the job store references: every monitored worker of a region, together."""
    dependencies = current_job_dependencies()
    if dependencies is None:
        logger.error("Job for region %s ran before monitoring was configured; skipped", aws_region)
        return
    task = asyncio.current_task()
    if task is not None:
        dependencies.running.add(task)
    try:
        worker_ids = await dependencies.scheduler.workers_to_collect(aws_region)
        jobs = [
            WorkerMetricsCollectionJob(worker_id).configure(
                collector=dependencies.collector,
                scheduler=dependencies.scheduler,
                observers=dependencies.observers,
            )
            for worker_id in worker_ids
        ]
        results = await dependencies.collector.collect_many(worker_ids) if worker_ids else {}
        # Together, not one after the other: observers batch too (the alert engine evaluates
        # the events that arrive in the same window in one transaction).
        await asyncio.gather(*(job.handle(results[job.worker_id]) for job in jobs))
    except Exception:
        logger.exception("❌ Failed to collect metrics for the workers in %s", aws_region)
    finally:
        if task is not None:
            dependencies.running.discard(task)


async def run_worker_metrics_collection(worker_id: str) -> None:
    """Collect one worker now (a new worker's first collection, or by hand)."""
    dependencies = current_job_dependencies()
    if dependencies is None:
        logger.error("Job for worker %s ran before monitoring was configured; skipped", worker_id)
        return
    task = asyncio.current_task()
    if task is not None:
        dependencies.running.add(task)
    try:
        job = WorkerMetricsCollectionJob(worker_id).configure(
            collector=dependencies.collector,
            scheduler=dependencies.scheduler,
            observers=dependencies.observers,
        )
        await job.run_every()
    except Exception:
        logger.exception("❌ Failed to collect metrics for worker %s", worker_id)
    finally:
        if task is not None:
            dependencies.running.discard(task)
