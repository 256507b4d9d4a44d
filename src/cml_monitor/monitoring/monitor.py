"""`FleetMonitor`: one region's run, start to end, with every collaborator injected.

A run takes the region's lease (so that of several replicas only one collects a region per
interval), lists the region's monitored workers from the database, collects them in one pass,
publishes the region's events to the observers as one batch, and stops monitoring the workers
that are gone (deleted, or terminated). It knows nothing of APScheduler or HTTP: the scheduler,
a test or a benchmark can drive it directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import WorkerMetricsCollected
from cml_monitor.domain.collections import RegionOutcome

from .collector import CollectionReport, FleetCollector
from .observers import ObserverPublisher
from .ports import RegionLeases, WorkerStore
from .unreachable import OwnOutages

logger = logging.getLogger(__name__)


class MonitoredWorkers:
    """Which workers are monitored here (id → region), and which were paused by hand."""

    def __init__(self) -> None:
        self._active: dict[str, str] = {}
        self._paused: set[str] = set()

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._active)

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._active.items())

    def region_of(self, worker_id: str) -> str | None:
        return self._active.get(worker_id)

    def regions(self) -> set[str]:
        return set(self._active.values())

    def is_paused(self, worker_id: str) -> bool:
        return worker_id in self._paused

    def paused(self) -> frozenset[str]:
        return frozenset(self._paused)

    def replace(self, pairs: Iterable[tuple[str, str]], region: str | None = None) -> list[str]:
        """Take the database's list (of one region, or all); returns the ids monitored now."""
        if region is None:
            self._active.clear()
        else:
            for worker_id in [w for w, r in self._active.items() if r == region]:
                del self._active[worker_id]
        for worker_id, worker_region in pairs:
            if worker_id not in self._paused:
                self._active[worker_id] = worker_region
        return [w for w, r in self._active.items() if region is None or r == region]

    def add(self, worker_id: str, region: str) -> None:
        self._paused.discard(worker_id)
        self._active[worker_id] = region

    def forget(self, worker_id: str) -> str | None:
        return self._active.pop(worker_id, None)

    def pause(self, worker_id: str) -> None:
        self._paused.add(worker_id)
        self._active.pop(worker_id, None)


@dataclass(frozen=True, slots=True)
class RegionRun:
    """The outcome of one region run, for the scheduler and the log."""

    region: str
    skipped: bool = False  # no collection here: another replica holds the lease, or it could not start
    workers: int = 0
    report: CollectionReport | None = None


# Told after every region run this replica made (not the runs skipped for another's lease):
# the shared collection status, the heartbeat and the `collection_failing` alert listen.
OutcomeListener = Callable[[RegionOutcome], Awaitable[None]]


class FleetMonitor:
    """Owns runs: a region's run, a collection outside the schedule, and waiting for them."""

    def __init__(
        self,
        workers: WorkerStore,
        collector: FleetCollector,
        publisher: ObserverPublisher,
        monitored: MonitoredWorkers,
        *,
        leases: RegionLeases | None = None,
        holder: str = "local",
        poll_interval: int = 300,
        clock: Clock = utcnow,
        outcome_listeners: Sequence[OutcomeListener] = (),
        listener_timeout: float = 10.0,
        outages: OwnOutages | None = None,
    ) -> None:
        self._workers = workers
        self._collector = collector
        self._publisher = publisher
        self._monitored = monitored
        self._leases = leases
        self._holder = holder
        self._poll_interval = poll_interval
        self._lease_ttl = timedelta(seconds=max(1.0, poll_interval * 0.8))
        self._clock = clock
        self._outages = outages or OwnOutages()
        self.completed_at: dict[str, datetime] = {}  # region → end of its last run that worked
        self._listeners = list(outcome_listeners)
        self._listener_timeout = listener_timeout
        self._in_flight: set[asyncio.Task[Any]] = set()

    # -- runs in flight ------------------------------------------------------------------------

    async def run_region(self, region: str) -> RegionRun:
        """One region's run: lease, list, collect, publish, tell the outcome listeners."""
        return await self._track(self._run_region(region))

    def collect_soon(self, worker_id: str) -> asyncio.Task[CollectionReport]:
        """Start collecting one worker now, outside its schedule; await the task for its report."""
        return self._track(self.collect([worker_id]))

    async def drain(self) -> None:
        """Wait for the collections in flight (a collection after a start/stop, a region run)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def stop(self, timeout: float = 30.0) -> None:
        """Let the collections in flight finish; cancel what still runs after `timeout` seconds."""
        running = list(self._in_flight)
        if not running:
            return
        _done, pending = await asyncio.wait(running, timeout=timeout)
        if pending:
            logger.warning("Collection still running after %.0f s - cancelling it", timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _track(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def publish(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Hand events that do not come from a collection (EC2 state changes) to the observers."""
        await self._publisher.publish(events)

    def overdue_regions(self, now: datetime) -> list[str]:
        """Regions whose runs stopped working (no run completed for two intervals): our fault."""
        limit = timedelta(seconds=2 * self._poll_interval)
        completed = self.completed_at
        return sorted(
            r for r in self._monitored.regions() if (done := completed.get(r)) is None or now - done > limit
        )

    # -- one run ---------------------------------------------------------------------------------

    async def _run_region(self, region: str) -> RegionRun:
        try:
            if not await self._claim(region):
                logger.info("Region %s is being collected by another replica - skipping this run", region)
                self.completed_at[region] = self._clock()  # someone is watching it
                return RegionRun(region, skipped=True)
            monitorable = await self._workers.list_monitorable_async(region)
        except Exception as exc:
            self._outages.note(self._clock())
            logger.error("❌ Could not start the collection of %s (database: %s)", region, exc)
            await self._tell(RegionOutcome(region, self._clock(), f"database or lease store: {exc}"))
            return RegionRun(region, skipped=True)
        worker_ids = self._monitored.replace(monitorable, region)
        if not worker_ids:
            self.completed_at[region] = self._clock()
            await self._tell(RegionOutcome(region, self._clock()))
            return RegionRun(region)
        report = await self.collect(worker_ids)
        if not report.store_failed:
            self.completed_at[region] = self._clock()
        await self._tell(RegionOutcome(region, self._clock(), report.error))
        running = sum(1 for e in report.events if e.status.value == "running")
        cycle = {
            "workers": len(worker_ids),
            "running": running,
            "failed": len(report.failed),
            "gone": len(report.missing) + len(report.terminated),
            "seconds": round(report.seconds, 3),
            "aws_calls": report.aws_calls,
            "cml_calls": report.cml_calls,
        }
        logger.info(
            "Collected %s: %d workers (%d running, %d failed, %d gone) in %.2f s, %d AWS and %d CML calls",
            region,
            len(worker_ids),
            running,
            len(report.failed),
            len(report.missing) + len(report.terminated),
            report.seconds,
            report.aws_calls,
            report.cml_calls,
            extra={"region": region, "cycle": cycle},
        )
        return RegionRun(region, workers=len(worker_ids), report=report)

    async def collect(self, worker_ids: Sequence[str]) -> CollectionReport:
        """Collect these workers now, publish their events, retire the ones that are gone."""
        report = await self._collector.collect(worker_ids)
        if report.store_failed:
            self._outages.note(self._clock())
        self._log_failures(report.failed)
        await self._publisher.publish(report.events)
        for worker_id in report.missing:
            logger.warning("Worker %s not found - stopping job", worker_id)
            self._monitored.forget(worker_id)
        for worker_id in report.terminated:
            logger.info("Worker %s is terminated - stopping its monitoring", worker_id)
            self._monitored.forget(worker_id)
        return report

    async def _tell(self, outcome: RegionOutcome) -> None:
        """Every outcome listener, side by side, each bounded and isolated: none stops the run."""

        async def one(listener: OutcomeListener) -> None:
            try:
                async with asyncio.timeout(self._listener_timeout):
                    await listener(outcome)
            except Exception as exc:
                name = getattr(listener, "__qualname__", repr(listener))
                logger.error("Telling %s how %s's collection went failed: %r", name, outcome.region, exc)

        await asyncio.gather(*(one(listener) for listener in self._listeners))

    async def _claim(self, region: str) -> bool:
        if self._leases is None:
            return True
        return await self._leases.acquire(f"collect:{region}", self._holder, self._clock(), self._lease_ttl)

    @staticmethod
    def _log_failures(failed: dict[str, str]) -> None:
        """One line per distinct reason (a region-wide AWS failure is one line, not thousands)."""
        by_reason: dict[str, list[str]] = defaultdict(list)
        for worker_id, reason in failed.items():
            by_reason[reason].append(worker_id)
        for reason, ids in by_reason.items():
            others = f" and {len(ids) - 1} others" if len(ids) > 1 else ""
            logger.error("❌ Failed to collect metrics for worker %s%s: %s", ids[0], others, reason)
