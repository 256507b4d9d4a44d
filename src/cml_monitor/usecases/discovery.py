"""Discovery: the workers EC2 tags as CML workers are registered (and forgotten) on a schedule.

New workers otherwise go unwatched until someone remembers to register them. Every
`WORKER_DISCOVERY_INTERVAL` the replica that holds the `discovery` lease lists, per region, the
instances carrying all of `WORKER_DISCOVERY_TAGS` (the tags are filters of one paged
`DescribeInstances`, so the account's other instances cost nothing), registers the new ones,
marks the terminated ones, and removes, with their history, the discovered workers terminated
longer than `WORKER_DISCOVERY_FORGET_AFTER`. A worker registered by hand is never forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from cml_monitor.aws import AwsError
from cml_monitor.clock import Clock
from cml_monitor.domain import Worker
from cml_monitor.domain.discovery import TaggedInstance, render_cml_url
from cml_monitor.storage import CMLWorkerRepository

from .errors import Conflict, InvalidInput
from .workers import WorkerOperations

logger = logging.getLogger(__name__)
LEASE = "discovery"


class TaggedInstances(Protocol):
    async def list_tagged_instances(
        self, aws_region: str, tags: dict[str, str], *, include_terminated: bool = False
    ) -> list[TaggedInstance]: ...


class Lease(Protocol):
    async def acquire(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool: ...


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    tags: dict[str, str]
    regions: Sequence[str] = ()  # empty: the regions of registered workers and the default one
    default_region: str = "us-east-1"
    cml_url_template: str = ""
    interval: float = 600.0
    forget_after: timedelta = timedelta(days=7)


@dataclass(slots=True)
class DiscoveryReport:
    regions: list[str] = field(default_factory=list)
    registered: list[Worker] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)  # worker ids marked terminated
    forgotten: list[str] = field(default_factory=list)  # worker ids removed
    failed: dict[str, str] = field(default_factory=dict)  # region → what went wrong
    skipped: bool = False  # another replica holds the lease


class WorkerDiscovery:
    def __init__(
        self,
        workers: WorkerOperations,
        repository: CMLWorkerRepository,
        aws: TaggedInstances,
        settings: DiscoverySettings,
        *,
        leases: Lease | None = None,
        holder: str = "local",
        clock: Clock,
    ) -> None:
        self._workers = workers
        self._repository = repository
        self._aws = aws
        self.settings = settings
        self._leases = leases
        self.holder = holder  # this replica, as the lease holder
        self._clock = clock

    async def run_once(self) -> DiscoveryReport:
        """One discovery pass (skipped when another replica holds the lease)."""
        report = DiscoveryReport()
        now = self._clock()
        ttl = timedelta(seconds=max(1.0, self.settings.interval * 0.8))
        if self._leases is not None and not await self._leases.acquire(LEASE, self.holder, now, ttl):
            report.skipped = True
            return report
        report.regions = await self._regions()
        for region in report.regions:
            try:
                instances = await self._aws.list_tagged_instances(
                    region, self.settings.tags, include_terminated=True
                )
            except AwsError as exc:
                logger.error("Discovery could not list the instances of %s: %s", region, exc)
                report.failed[region] = str(exc)
                continue
            await self._apply(region, instances, report)
        await self._forget(report)
        if report.registered or report.terminated or report.forgotten:
            logger.info(
                "Discovery: %d registered, %d marked terminated, %d forgotten in %s",
                len(report.registered),
                len(report.terminated),
                len(report.forgotten),
                ", ".join(report.regions),
            )
        return report

    async def _regions(self) -> list[str]:
        if self.settings.regions:
            return list(self.settings.regions)
        return sorted(await self._repository.regions_async() | {self.settings.default_region})

    async def _apply(self, region: str, instances: list[TaggedInstance], report: DiscoveryReport) -> None:
        known = await self._repository.get_by_instance_ids_async([i.instance_id for i in instances])
        for instance in instances:
            worker = known.get(instance.instance_id)
            if instance.terminated:
                if worker is not None and worker.discovered_at is not None and not worker.is_terminated:
                    await self._workers.mark_terminated(worker)
                    report.terminated.append(worker.id)
                continue
            if worker is None:
                registered = await self._register(region, instance)
                if registered is not None:
                    report.registered.append(registered)

    async def _register(self, region: str, instance: TaggedInstance) -> Worker | None:
        name = (instance.name or "").strip()[:128]
        name = name if name and name.isprintable() else instance.instance_id
        cml_url = None
        if self.settings.cml_url_template:
            cml_url = render_cml_url(self.settings.cml_url_template, instance)
            if cml_url is None:
                logger.warning(
                    "Discovery: %s lacks a value the cml_url template needs; registered without a controller",
                    instance.instance_id,
                )
        try:
            try:
                return await self._workers.register(
                    name=name,
                    aws_region=region,
                    aws_instance_id=instance.instance_id,
                    cml_url=cml_url,
                    discovered=True,
                )
            except InvalidInput as exc:  # the URL is in a blocked network: watch EC2 only
                logger.warning("Discovery: %s's cml_url %s: %s", instance.instance_id, cml_url, exc)
                return await self._workers.register(
                    name=name, aws_region=region, aws_instance_id=instance.instance_id, discovered=True
                )
        except Conflict:  # registered meanwhile (by hand, or by another replica)
            return None

    async def _forget(self, report: DiscoveryReport) -> None:
        cutoff = self._clock() - self.settings.forget_after
        for worker in await self._repository.list_forgettable_async(cutoff):
            await self._workers.remove(worker.id)
            report.forgotten.append(worker.id)
            logger.info("Discovery: forgot %s (%s), terminated before %s", worker.name, worker.id, cutoff)
