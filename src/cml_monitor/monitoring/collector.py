"""The collection pipeline for a batch of workers: load → EC2 → CloudWatch → CML → save.

Each `WorkerMetricsCollectionJob` asks for its own worker; the `BatchLoader` gathers the
workers whose jobs fire together and this module collects them in one pass: one SELECT, the
AWS calls batched per region, the CML controllers polled concurrently, and one transaction
that writes every worker row and history row. A failure touches only the workers it concerns
(a region whose EC2 call failed, say) and is reported back to their jobs, which log it; the
next interval tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from opentelemetry import trace

from cml_monitor.aws import InstanceStatus, Utilization
from cml_monitor.clock import Clock, isoformat, utcnow
from cml_monitor.domain import Worker, WorkerStatus
from cml_monitor.storage import CMLWorkerRepository, MetricSample

from .batching import BatchLoader

logger = logging.getLogger(__name__)


class AwsClient(Protocol):
    """What the collector needs of AWS (`AwsEc2Client`, or a fake in unit tests)."""

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, InstanceStatus]: ...

    async def get_utilization(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, Utilization]: ...


class CmlClient(Protocol):
    async def get_active_labs_count(self, cml_url: str) -> int: ...


@dataclass(frozen=True, slots=True)
class CollectionResult:
    """What one collection found for one worker, handed back to that worker's job."""

    worker_id: str
    found: bool = True
    error: str | None = None
    status: WorkerStatus | None = None
    metrics_data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.found and self.error is None


STOP_EXPECTED_FOR = timedelta(hours=1)


def build_metrics_event(
    worker: Worker, previous: WorkerStatus, cml_reachable: bool | None = None
) -> dict[str, Any]:
    """The metrics event of DESIGN §3 (plus instance id, region, thresholds, controller and
    whether a stop was asked for through the API)."""
    stop_requested = (
        worker.stop_requested_at is not None
        and worker.last_collected_at is not None
        and worker.last_collected_at - worker.stop_requested_at < STOP_EXPECTED_FOR
    )
    return {
        "worker_id": worker.id,
        "worker_name": worker.name,
        "aws_instance_id": worker.aws_instance_id,
        "aws_region": worker.aws_region,
        "status": worker.status.value,
        "previous_status": previous.value,
        "timestamp": isoformat(worker.last_collected_at),
        "metrics": {
            "cpu_utilization": worker.cpu_utilization,
            "memory_utilization": worker.memory_utilization,
        },
        "ec2": {
            "instance_state": worker.ec2_instance_state,
            "system_status": worker.ec2_system_status_check,
            "instance_status": worker.ec2_instance_status_check,
        },
        "active_labs_count": worker.active_labs_count,
        "thresholds": {"cpu": worker.cpu_threshold, "memory": worker.memory_threshold},
        "cml": {"reachable": cml_reachable},
        "stop_requested": stop_requested,
    }


class FleetCollector:
    """Collects many workers at once; `collect(worker_id)` is the per-worker entry point."""

    def __init__(
        self,
        repository: CMLWorkerRepository,
        aws_client: AwsClient,
        cml_client: CmlClient | None = None,
        *,
        clock: Clock = utcnow,
        tracer: trace.Tracer | None = None,
        batch_window: float = 0.05,
        cml_concurrency: int = 100,
        cycle_observer: Callable[[float], None] | None = None,
    ) -> None:
        self._repository = repository
        self._cycle_observer = cycle_observer
        self._aws = aws_client
        self._cml = cml_client
        self._clock = clock
        self._tracer = tracer or trace.get_tracer("cml_monitor.monitoring")
        self._cml_limit = asyncio.Semaphore(cml_concurrency)
        self._loader: BatchLoader[str, CollectionResult] = BatchLoader(self.collect_many, window=batch_window)
        self.last_cycle_seconds: float | None = None

    async def collect(self, worker_id: str) -> CollectionResult:
        return await self._loader.load(worker_id)

    async def drain(self) -> None:
        """Let every collection under way finish (used at shutdown)."""
        await self._loader.drain()

    async def collect_many(self, worker_ids: Sequence[str]) -> dict[str, CollectionResult]:
        started = time.perf_counter()
        start_ns = time.time_ns()
        with self._tracer.start_as_current_span("collect_fleet_metrics") as span:
            span.set_attribute("workers", len(worker_ids))
            results = await self._collect(list(worker_ids), start_ns)
        self.last_cycle_seconds = time.perf_counter() - started
        if self._cycle_observer is not None:
            self._cycle_observer(self.last_cycle_seconds)
        logger.debug("Collected %d workers in %.3f s", len(worker_ids), self.last_cycle_seconds)
        return results

    async def _collect(self, worker_ids: list[str], start_ns: int) -> dict[str, CollectionResult]:
        try:
            workers = await self._repository.get_many_async(worker_ids)
        except Exception as exc:
            logger.error("Could not load %d workers from the database: %s", len(worker_ids), exc)
            return {i: CollectionResult(i, error=f"database: {exc}") for i in worker_ids}
        results = {i: CollectionResult(i, found=False) for i in worker_ids if i not in workers}

        by_region: dict[str, list[Worker]] = defaultdict(list)
        for worker in workers.values():
            by_region[worker.aws_region].append(worker)
        region_reports = await asyncio.gather(
            *(self._read_region(region, members) for region, members in by_region.items())
        )

        observed: list[tuple[Worker, InstanceStatus, Utilization | None]] = []
        for members, report in zip(by_region.values(), region_reports, strict=True):
            if isinstance(report, str):
                for worker in members:
                    results[worker.id] = CollectionResult(worker.id, error=report)
                continue
            statuses, utilization = report
            for worker in members:
                status = statuses.get(worker.aws_instance_id)
                if status is None:
                    results[worker.id] = CollectionResult(worker.id, error="EC2 returned no status")
                    continue
                observed.append((worker, status, utilization.get(worker.aws_instance_id)))

        labs = await self._read_labs([w for w, s, _ in observed if s.instance_state == "running"])
        reachable = {
            w.id: w.id in labs
            for w, s, _ in observed
            if s.instance_state == "running" and w.cml_url and self._cml is not None
        }

        now = self._clock()
        updated: list[Worker] = []
        samples: list[MetricSample] = []
        previous: dict[str, WorkerStatus] = {}
        for worker, status, usage in observed:
            previous[worker.id] = worker.update_ec2_state(
                instance_state=status.instance_state if status.found else "not-found",
                system_status=status.system_status,
                instance_status=status.instance_status,
                now=now,
            )
            running = worker.status is WorkerStatus.RUNNING
            worker.update_telemetry(
                cpu_utilization=usage.avg_cpu_utilization if running and usage else None,
                memory_utilization=usage.avg_memory_utilization if running and usage else None,
                active_labs_count=labs.get(worker.id) if running else 0,
                now=now,
            )
            worker.pull_events()
            updated.append(worker)
            samples.append(
                MetricSample(
                    worker_id=worker.id,
                    timestamp=now,
                    status=worker.status.value,
                    cpu_utilization=worker.cpu_utilization,
                    memory_utilization=worker.memory_utilization,
                    active_labs_count=worker.active_labs_count,
                )
            )
        try:
            await self._repository.save_collection_async(updated, samples)
        except Exception as exc:
            logger.error("Could not save the collection of %d workers: %s", len(updated), exc)
            for worker in updated:
                results[worker.id] = CollectionResult(worker.id, error=f"database: {exc}")
            return results

        for worker in updated:
            self._trace_worker(worker, start_ns)
            results[worker.id] = CollectionResult(
                worker.id,
                status=worker.status,
                metrics_data=build_metrics_event(worker, previous[worker.id], reachable.get(worker.id)),
            )
        return results

    async def _read_region(
        self, region: str, members: list[Worker]
    ) -> tuple[dict[str, InstanceStatus], dict[str, Utilization]] | str:
        """EC2 state of every member, CloudWatch usage of the running ones; an error as text."""
        instance_ids = [w.aws_instance_id for w in members]
        try:
            statuses = await self._aws.describe_instance_statuses(region, instance_ids)
            running = [i for i in instance_ids if (s := statuses.get(i)) and s.instance_state == "running"]
            utilization = await self._aws.get_utilization(region, running) if running else {}
        except Exception as exc:
            logger.error("AWS call for %d workers in %s failed: %s", len(members), region, exc)
            return f"AWS: {exc}"
        logger.debug("EC2 %s: %d instances described, %d running", region, len(statuses), len(running))
        return statuses, utilization

    async def _read_labs(self, workers: list[Worker]) -> dict[str, int]:
        """Running labs per worker; a controller that fails is logged and left out."""
        if self._cml is None:
            return {}
        cml = self._cml
        with_url = [w for w in workers if w.cml_url]

        async def one(worker: Worker) -> tuple[str, int | None]:
            async with self._cml_limit:
                try:
                    return worker.id, await cml.get_active_labs_count(worker.cml_url or "")
                except Exception as exc:
                    logger.warning(
                        "CML controller of worker %s (%s) did not answer: %s",
                        worker.id,
                        worker.cml_url,
                        exc,
                    )
                    return worker.id, None

        pairs = await asyncio.gather(*(one(w) for w in with_url))
        return {worker_id: count for worker_id, count in pairs if count is not None}

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
