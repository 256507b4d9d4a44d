"""`FleetCollector`: one pass over a batch of workers, from the database to typed events.

The steps, each a method: load the workers (one SELECT) → read AWS per region (EC2 state of
all, CloudWatch usage of the running ones) → read the CML controllers concurrently → apply what
was read to each worker → save every worker and history row in one transaction → build one
`WorkerMetricsCollected` per worker. A failure touches only the workers it concerns (a region
whose EC2 call failed, say) and is reported in the `CollectionReport`; the next interval tries
again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from opentelemetry import trace

from cml_monitor.aws import InstanceStatus, Utilization
from cml_monitor.call_tally import counting
from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import MetricSample, Worker, WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.cml import CmlStatus, ControllerReading
from cml_monitor.domain.idle import IdlePolicy

from .ports import AwsClient, CmlClient, WorkerStore

MetricsSource = Literal["auto", "cloudwatch", "controller"]

logger = logging.getLogger(__name__)

# A stop asked through the API within this long before a collection is not "unexpected".
STOP_EXPECTED_FOR = timedelta(hours=1)


@dataclass(slots=True)
class CollectionReport:
    """What one pass found: an event per collected worker, and what could not be collected."""

    events: list[WorkerMetricsCollected] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # not in the database any more
    failed: dict[str, str] = field(default_factory=dict)  # worker id → reason
    store_failed: bool = False  # our own database failed: no verdict on any worker
    error: str | None = None  # why the pass failed as a whole (AWS or the database), if it did
    seconds: float = 0.0
    aws_calls: int = 0  # requests sent for this pass, retries included
    cml_calls: int = 0

    @property
    def terminated(self) -> list[str]:
        return [e.worker_id for e in self.events if e.status is WorkerStatus.TERMINATED]


@dataclass(frozen=True, slots=True)
class RegionReading:
    """EC2 and CloudWatch for one region; `error` set when EC2 itself could not be read."""

    statuses: dict[str, InstanceStatus] = field(default_factory=dict)
    utilization: dict[str, Utilization] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """What was read of one worker in this pass."""

    worker: Worker
    status: InstanceStatus
    usage: Utilization | None
    source: str | None = None  # where this cycle's CPU and memory come from

    @property
    def running(self) -> bool:
        return self.status.instance_state == "running"


def stop_was_requested(worker: Worker) -> bool:
    return (
        worker.stop_requested_at is not None
        and worker.last_collected_at is not None
        and worker.last_collected_at - worker.stop_requested_at < STOP_EXPECTED_FOR
    )


def metrics_event(worker: Worker, previous: WorkerStatus) -> WorkerMetricsCollected:
    assert worker.last_collected_at is not None
    return WorkerMetricsCollected(
        worker_id=worker.id,
        worker_name=worker.name,
        aws_instance_id=worker.aws_instance_id,
        aws_region=worker.aws_region,
        status=worker.status,
        previous_status=previous,
        timestamp=worker.last_collected_at,
        cpu_utilization=worker.cpu_utilization,
        memory_utilization=worker.memory_utilization,
        instance_state=worker.ec2_instance_state,
        system_status=worker.ec2_system_status_check,
        instance_status=worker.ec2_instance_status_check,
        active_labs_count=worker.active_labs_count,
        cpu_threshold=worker.cpu_threshold,
        memory_threshold=worker.memory_threshold,
        cml=worker.cml,
        scheduled_events=worker.ec2_scheduled_events,
        idle=worker.idle,
        auto_pause=worker.auto_pause,
        impaired_samples=worker.impaired_samples,
        stop_requested=stop_was_requested(worker),
        metrics_source=worker.metrics_source,
        created_at=worker.created_at,
        updated_at=worker.updated_at,
        cml_url=worker.cml_url,
        last_activity_at=worker.last_activity_at,
        status_changed_at=worker.status_changed_at,
        stop_requested_at=worker.stop_requested_at,
        discovered_at=worker.discovered_at,
    )


class FleetCollector:
    def __init__(
        self,
        repository: WorkerStore,
        aws_client: AwsClient,
        cml_client: CmlClient | None = None,
        *,
        clock: Clock = utcnow,
        tracer: trace.Tracer | None = None,
        cml_concurrency: int = 100,
        licensing_interval: float = 3600.0,
        activity_interval: float = 600.0,
        idle_policy: IdlePolicy | None = None,
        cycle_observer: Callable[[float], None] | None = None,
        metrics_source: MetricsSource = "auto",
    ) -> None:
        self._metrics_source = metrics_source
        self._repository = repository
        self._aws = aws_client
        self._cml = cml_client
        self._clock = clock
        self._tracer = tracer or trace.get_tracer("cml_monitor.monitoring")
        self._cml_limit = asyncio.Semaphore(cml_concurrency)
        self._licensing_interval = licensing_interval
        self._activity_interval = activity_interval
        self._idle_policy = idle_policy or IdlePolicy()
        self._cycle_observer = cycle_observer

    async def collect(self, worker_ids: Sequence[str]) -> CollectionReport:
        started = time.perf_counter()
        start_ns = time.time_ns()
        with counting() as calls, self._tracer.start_as_current_span("collect_fleet_metrics") as span:
            span.set_attribute("workers", len(worker_ids))
            report = await self._collect(list(dict.fromkeys(worker_ids)), start_ns)
        report.seconds = time.perf_counter() - started
        report.aws_calls, report.cml_calls = calls.aws, calls.cml
        if self._cycle_observer is not None:
            self._cycle_observer(report.seconds)
        return report

    async def _collect(self, worker_ids: list[str], start_ns: int) -> CollectionReport:
        report = CollectionReport()
        try:
            workers = await self._repository.get_many_async(worker_ids)
        except Exception as exc:
            logger.error("Could not load %d workers from the database: %s", len(worker_ids), exc)
            report.failed = dict.fromkeys(worker_ids, f"database: {exc}")
            report.store_failed = True
            report.error = f"database: {exc}"
            return report
        report.missing = [i for i in worker_ids if i not in workers]
        # What the workers looked like when loaded: an EC2 event may change them meanwhile.
        seen = {w.id: w.status.value for w in workers.values()}
        collected_before = {w.id: w.last_collected_at for w in workers.values()}
        observations = await self._read_aws(list(workers.values()), report)
        running = [o.worker for o in observations if o.running]
        now = self._clock()
        readings = await self._read_controllers(running, now)
        observations = await self._read_usage(observations, readings)
        previous = {o.worker.id: self._apply(o, readings.get(o.worker.id), now) for o in observations}
        updated = [o.worker for o in observations]
        try:
            written = await self._repository.save_collection_async(
                updated, [self._sample(w, now) for w in updated], seen, collected_before
            )
        except Exception as exc:
            logger.error("Could not save the collection of %d workers: %s", len(updated), exc)
            report.failed.update(dict.fromkeys((w.id for w in updated), f"database: {exc}"))
            report.store_failed = True
            report.error = f"database: {exc}"
            return report
        for worker in updated:
            if worker.id not in written:
                continue  # deleted meanwhile, or a newer collection was saved first: not ours to tell
            self._trace_worker(worker, start_ns)
            report.events.append(metrics_event(worker, previous[worker.id]))
        return report

    async def _read_aws(self, workers: list[Worker], report: CollectionReport) -> list[Observation]:
        """Every region at once; the workers of a region AWS could not describe are failed."""
        by_region: dict[str, list[Worker]] = defaultdict(list)
        for worker in workers:
            by_region[worker.aws_region].append(worker)
        readings = await asyncio.gather(*(self._read_region(r, m) for r, m in by_region.items()))
        observations: list[Observation] = []
        for members, reading in zip(by_region.values(), readings, strict=True):
            for worker in members:
                status = reading.statuses.get(worker.aws_instance_id)
                if reading.error is not None:
                    report.failed[worker.id] = reading.error
                    report.error = report.error or reading.error
                elif status is None:
                    report.failed[worker.id] = "EC2 returned no status"
                else:
                    observations.append(
                        Observation(worker, status, reading.utilization.get(worker.aws_instance_id))
                    )
        return observations

    async def _read_region(self, region: str, members: list[Worker]) -> RegionReading:
        """EC2 state of every member (CloudWatch comes after the controllers answered)."""
        instance_ids = [w.aws_instance_id for w in members]
        try:
            statuses = await self._aws.describe_instance_statuses(region, instance_ids)
        except Exception as exc:
            logger.error("AWS call for %d workers in %s failed: %s", len(members), region, exc)
            return RegionReading(error=f"AWS: {exc}")
        return RegionReading(statuses)

    def _source(self, reading: ControllerReading | None) -> str | None:
        """Where a running worker's CPU and memory come from this cycle."""
        answered = reading is not None and reading.values.get("cpu_percent") is not None
        if self._metrics_source == "cloudwatch":
            return "cloudwatch"
        if answered:
            return "controller"
        return "cloudwatch" if self._metrics_source == "auto" else None

    async def _read_usage(
        self, observations: list[Observation], readings: dict[str, ControllerReading]
    ) -> list[Observation]:
        """CPU and memory of the running workers: the controller's `system_stats` where it
        answered this cycle (free, live), CloudWatch for the others (billed per metric).

        CloudWatch failing costs the usage figures of this cycle, not the EC2 state.
        """
        sourced = [
            replace(o, source=self._source(readings.get(o.worker.id))) if o.running else o
            for o in observations
        ]
        by_region: dict[str, list[str]] = defaultdict(list)
        for o in sourced:
            if o.running and o.source == "cloudwatch":
                by_region[o.worker.aws_region].append(o.worker.aws_instance_id)

        async def region_usage(region: str, instance_ids: list[str]) -> dict[str, Utilization]:
            try:
                return await self._aws.get_utilization(region, instance_ids)
            except Exception as exc:
                logger.error("CloudWatch for %d workers in %s failed: %s", len(instance_ids), region, exc)
                return {}

        found = await asyncio.gather(*(region_usage(r, ids) for r, ids in by_region.items()))
        usage = {i: u for region in found for i, u in region.items()}
        return [replace(o, usage=usage.get(o.worker.aws_instance_id)) for o in sourced]

    async def _read_controllers(self, workers: list[Worker], now: datetime) -> dict[str, ControllerReading]:
        """Each running worker's controller, concurrently and bounded; licensing when it is due."""
        if self._cml is None:
            return {}
        cml = self._cml

        async def one(worker: Worker) -> tuple[str, ControllerReading]:
            known = worker.cml or CmlStatus()
            licensing = known.licensing_due(now, self._licensing_interval)
            activity = known.activity_due(now, self._activity_interval)
            async with self._cml_limit:
                try:
                    reading = await cml.read_controller(
                        worker.cml_url or "", licensing=licensing, activity=activity
                    )
                except Exception as exc:  # a bug of ours must not cost the region's cycle
                    logger.exception("Reading the controller of worker %s failed", worker.id)
                    reading = ControllerReading(reachable=False, errors=(f"client: {exc!r}",))
            if reading.errors:
                logger.debug(
                    "CML controller of worker %s (%s): %s", worker.id, worker.cml_url, reading.errors
                )
            return worker.id, reading

        return dict(await asyncio.gather(*(one(w) for w in workers if w.cml_url)))

    def _apply(
        self, observation: Observation, reading: ControllerReading | None, now: datetime
    ) -> WorkerStatus:
        """Apply what was read to the worker; returns its status before."""
        worker, status, usage = observation.worker, observation.status, observation.usage
        previous_collection = worker.last_collected_at
        previous = worker.update_ec2_state(
            instance_state=status.instance_state if status.found else "not-found",
            system_status=status.system_status,
            instance_status=status.instance_status,
            scheduled_events=status.scheduled_events,
            now=now,
        )
        running = worker.status is WorkerStatus.RUNNING
        cpu = memory = None
        if running and observation.source == "controller" and reading is not None:
            cpu, memory = reading.values.get("cpu_percent"), reading.values.get("memory_used_percent")
        elif running and usage:
            cpu, memory = usage.avg_cpu_utilization, usage.avg_memory_utilization
        worker.update_telemetry(
            cpu_utilization=cpu,
            memory_utilization=memory,
            active_labs_count=None if running else 0,
            now=now,
            metrics_source=observation.source if running else None,
        )
        if not running:
            worker.controller_stopped(now)
        elif reading is not None:
            worker.update_cml(reading, now)
        worker.update_idle(now, previous_collection, self._idle_policy)
        return previous

    @staticmethod
    def _sample(worker: Worker, now: datetime) -> MetricSample:
        return MetricSample(
            worker_id=worker.id,
            timestamp=now,
            status=worker.status.value,
            cpu_utilization=worker.cpu_utilization,
            memory_utilization=worker.memory_utilization,
            active_labs_count=worker.active_labs_count,
            running_nodes=worker.cml.running_nodes if worker.cml else None,
            disk_used_percent=worker.cml.disk_used_percent if worker.cml else None,
        )

    def _trace_worker(self, worker: Worker, start_ns: int) -> None:
        span = self._tracer.start_span("collect_worker_metrics", start_time=start_ns)
        span.set_attribute("worker_id", worker.id)
        span.set_attribute("aws_instance_id", worker.aws_instance_id)
        span.set_attribute("status", worker.status.value)
        if worker.cpu_utilization is not None:
            span.set_attribute("cpu_utilization", worker.cpu_utilization)
        if worker.memory_utilization is not None:
            span.set_attribute("memory_utilization", worker.memory_utilization)
        span.end()
