"""Worker use cases: register, import, edit, remove, refresh, stop/start/reboot, read history."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from cml_monitor.actions import ActionExecutor, ActionInFlight, ActionNotAllowed
from cml_monitor.aws import AwsEc2Client, AwsError
from cml_monitor.clock import Clock
from cml_monitor.cml import CmlControllerClient, CmlControllerError
from cml_monitor.cml.guard import BlockedAddress, UrlGuard
from cml_monitor.domain import Worker, looks_like_id
from cml_monitor.domain.actions import LOCAL, Action, ActionKind, ActionReason, ActionResult
from cml_monitor.domain.cml import StartedLab
from cml_monitor.metrics import PrometheusMetrics
from cml_monitor.monitoring import FleetMonitor, WorkerMonitoringScheduler, job_id_for_region
from cml_monitor.monitoring.freshness import FleetFreshness
from cml_monitor.storage import CMLWorkerRepository, DuplicateWorkerError
from cml_monitor.storage.history import HistoryStore, Point

from .errors import Conflict, InvalidInput, NotFound, UpstreamFailed

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    imported: list[Worker]
    skipped: list[tuple[str, str]]  # (instance id, reason)
    would_import: list[tuple[str, str, str | None]] = field(
        default_factory=list
    )  # preview: (id, name, state)


class WorkerOperations:
    def __init__(
        self,
        repository: CMLWorkerRepository,
        scheduler: WorkerMonitoringScheduler,
        monitor: FleetMonitor,
        aws: AwsEc2Client,
        history: HistoryStore,
        metrics: PrometheusMetrics,
        *,
        clock: Clock,
        monitoring: Literal["schedule", "collect_once", "off"],
        url_guard: UrlGuard,
        executor: ActionExecutor,
        freshness: FleetFreshness,
        controllers: CmlControllerClient | None = None,
    ) -> None:
        self._repository = repository
        self._scheduler = scheduler
        self._monitor = monitor
        self._aws = aws
        self._history = history
        self._metrics = metrics
        self._clock = clock
        self._monitoring = monitoring
        self._guard = url_guard
        self._executor = executor
        self._freshness = freshness
        self._controllers = controllers

    def next_run_at(self, worker: Worker) -> datetime | None:
        """When the worker is collected next, from memory (never waits on the job store).

        A collecting replica reads its own schedule; an API replica derives it from the shared
        collection records and the aligned schedule, so it is never "not monitored" while
        collectors work.
        """
        if worker.is_terminated or self._monitoring == "off":
            return None
        if self._monitoring == "schedule":
            return self._scheduler.next_run_at(worker.id, worker.aws_region)
        return self._freshness.next_run_at(worker.aws_region)

    async def monitoring_jobs(self) -> tuple[list[dict[str, Any]], bool]:
        """Every monitored worker with its region's job and next run, and whether that view is stale."""
        if self._monitoring == "schedule":
            return await self._scheduler.jobs_view()
        if self._monitoring == "off":
            return [], False
        pairs = await self._repository.list_monitorable_async()
        jobs = [
            {"worker_id": worker_id, "job_id": job_id_for_region(region), "next_run_at": next_run}
            for worker_id, region in pairs
            if (next_run := self._freshness.next_run_at(region)) is not None
        ]
        return jobs, False

    async def get(self, worker_id: str) -> Worker:
        worker = await self._repository.get_by_id_async(worker_id) if looks_like_id(worker_id) else None
        if worker is None:
            raise NotFound(f"worker {worker_id!r} not found")
        return worker

    async def get_by_instance(self, instance_id: str) -> Worker:
        worker = await self._repository.get_by_instance_id_async(instance_id)
        if worker is None:
            raise NotFound(f"no worker watches instance {instance_id!r}")
        return worker

    async def exists(self, worker_id: str) -> bool:
        return looks_like_id(worker_id) and await self._repository.get_by_id_async(worker_id) is not None

    async def list(self, **filters: Any) -> tuple[list[Worker], int]:
        return await self._repository.list_async(**filters)

    async def register(
        self,
        *,
        name: str,
        aws_region: str,
        aws_instance_id: str,
        cml_url: str | None = None,
        discovered: bool = False,
    ) -> Worker:
        """Register a worker and start monitoring it; `Conflict` if the instance is registered.

        `discovered`: registered by tag discovery, which forgets it once long terminated.
        """
        if cml_url is not None:
            await self._check_cml_url(cml_url)
        worker = Worker.register(
            name=name,
            aws_region=aws_region,
            aws_instance_id=aws_instance_id,
            cml_url=cml_url,
            now=self._clock(),
        )
        if discovered:
            worker.discovered_at = worker.created_at
        try:
            await self._repository.add_async(worker)
        except DuplicateWorkerError:
            raise Conflict(f"aws_instance_id: instance {aws_instance_id} is already registered") from None
        if self._monitoring == "schedule":
            await self._scheduler.start_monitoring_worker_async(worker.id)
        elif self._monitoring == "collect_once":  # an API-only replica: collectors schedule it
            self._monitor.collect_soon(worker.id)
        logger.info("Registered worker %s (%s in %s)", worker.id, aws_instance_id, aws_region)
        return worker

    async def _check_cml_url(self, url: str) -> None:
        """The CML password goes to this URL every cycle: never into a blocked network."""
        try:
            await self._guard.check_url(url)
        except BlockedAddress as exc:
            raise InvalidInput("cml_url", f"is not allowed: {exc} (CML_URL_BLOCKED_NETWORKS)") from None

    async def import_by_tags(
        self, aws_region: str, tags: dict[str, str], *, preview: bool = False
    ) -> ImportOutcome:
        """Register every EC2 instance carrying all the tags that is not registered yet
        (`preview`: only say which ones would be)."""
        try:
            instances = await self._aws.describe_instances_by_tags(aws_region, tags)
        except AwsError as exc:
            logger.error("Import from %s failed: %s", aws_region, exc)
            raise UpstreamFailed(f"AWS could not list instances in {aws_region}: {exc}") from None
        imported: list[Worker] = []
        skipped: list[tuple[str, str]] = []
        would_import: list[tuple[str, str, str | None]] = []
        for instance in instances:
            instance_id = instance["instance_id"]
            if await self._repository.get_by_instance_id_async(instance_id) is not None:
                skipped.append((instance_id, "already registered"))
                continue
            name = (instance.get("name") or instance_id)[:128]
            name = name if name.isprintable() and name.strip() else instance_id
            if preview:
                would_import.append((instance_id, name, instance.get("state")))
                continue
            try:
                worker = await self.register(
                    name=name,
                    aws_region=aws_region,
                    aws_instance_id=instance_id,
                )
            except Conflict:
                skipped.append((instance_id, "already registered"))
                continue
            imported.append(worker)
        return ImportOutcome(imported, skipped, would_import)

    async def edit(self, worker_id: str, changes: dict[str, Any]) -> Worker:
        """Change the name, the controller URL or the threshold overrides (`None` clears the last three)."""
        for name in ("name", "auto_pause"):
            if name in changes and changes[name] is None:
                raise InvalidInput(name, f"{name} cannot be null")
        worker = await self.get(worker_id)
        if changes.get("cml_url") is not None:
            await self._check_cml_url(changes["cml_url"])
        if changes:
            worker.edit(now=self._clock(), **changes)
            await self._repository.update_async(worker)
        return worker

    async def remove(self, worker_id: str) -> None:
        """Unregister the worker: its monitoring stops and its history is deleted."""
        worker = await self.get(worker_id)
        await self._scheduler.stop_monitoring_worker_async(worker.id)
        await self._repository.remove_async(worker.id)
        self._metrics.forget(worker.id)
        logger.info("Unregistered worker %s", worker.id)

    async def mark_terminated(self, worker: Worker) -> None:
        """EC2 says the instance is terminated: record it and stop monitoring it."""
        worker.update_ec2_state(
            instance_state="terminated", system_status=None, instance_status=None, now=self._clock()
        )
        await self._repository.update_async(worker)
        await self._scheduler.stop_monitoring_worker_async(worker.id)
        logger.info("Worker %s (%s) is terminated", worker.name, worker.aws_instance_id)

    async def refresh(self, worker_id: str) -> Worker:
        """Collect the worker now, in the background; the result arrives as usual."""
        worker = await self.get(worker_id)
        self._monitor.collect_soon(worker.id)
        return worker

    async def act(
        self, worker_id: str, kind: str, actor: str = LOCAL, *, reason: str | None = None, force: bool = False
    ) -> Action:
        """Stop, start or reboot the worker's instance by hand, through the audited path.

        A stop or reboot of a running worker whose controller reports started labs is refused
        (`Conflict` naming how many labs and users) unless `force`: a person should know whose
        work they interrupt. `reason` is kept at the head of the action's `detail`. A stop asked
        for here raises no `unexpected_stop`; a start snoozes auto-pause. `Conflict` too when the
        worker's state does not allow it or another action is in flight; `UpstreamFailed` when
        AWS refused (the action is recorded `failed` either way).
        """
        worker = await self.get(worker_id)
        action_kind = ActionKind(kind)
        if action_kind is not ActionKind.START and not force and worker.ec2_instance_state == "running":
            in_the_way = await self._labs_in_the_way(worker, action_kind)
            if in_the_way is not None:
                raise Conflict(in_the_way)
        try:
            action = await self._executor.run(worker, action_kind, ActionReason.MANUAL, actor, comment=reason)
        except (ActionNotAllowed, ActionInFlight) as exc:
            raise Conflict(str(exc)) from None
        self._monitor.collect_soon(worker.id)
        if action.result is ActionResult.FAILED:
            raise UpstreamFailed(f"AWS refused to {kind} {worker.aws_instance_id}: {action.detail}")
        return action

    async def started_labs(self, worker_id: str) -> tuple[list[StartedLab], str | None]:
        """The worker's started labs, read from its controller now, and why they could not be
        (None when they were)."""
        worker = await self.get(worker_id)
        if not worker.cml_url or self._controllers is None:
            return [], "no controller URL is registered for this worker"
        try:
            return await self._controllers.started_labs(worker.cml_url), None
        except CmlControllerError as exc:
            return [], str(exc)

    async def _labs_in_the_way(self, worker: Worker, kind: ActionKind) -> str | None:
        """Why a stop or reboot would interrupt someone's work; None when nothing says it would.

        The controller is asked now; when it cannot be, the count of the last collection stands.
        """
        labs, error = await self.started_labs(worker.id) if worker.cml_url else ([], "no controller")
        advice = f'send {{"force": true}} to {kind.value} it anyway'
        if error is None:
            if not labs:
                return None
            users = sorted({lab.owner or "an unnamed user" for lab in labs})
            return (
                f"worker {worker.name} has {len(labs)} started lab(s) of {len(users)} user(s) "
                f"({', '.join(users)}); {advice}"
            )
        started = worker.cml.labs_started if worker.cml is not None else None
        if started:
            return (
                f"worker {worker.name} had {started} started lab(s) at its last collection (users "
                f"unknown: the controller cannot be read now: {error}); {advice}"
            )
        return None

    async def history(
        self, worker_id: str, since: datetime | None, until: datetime | None, step: int | None, limit: int
    ) -> tuple[int, str, list[Point]]:
        """The worker's history at the resolution the range deserves (default: the last 24 h)."""
        worker = await self.get(worker_id)
        until = until or self._clock()
        since = since or until - timedelta(hours=24)
        if since > until:
            raise InvalidInput("since", "must not be after until")
        return await self._history.series(worker.id, since, until, step, limit)
