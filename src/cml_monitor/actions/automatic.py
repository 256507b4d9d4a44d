"""`AutomaticActions`: auto-pause of idle workers and remediation of impaired ones.

An observer of the monitoring loop: it sees a region's events right after they are saved, on
the replica that holds the region's lease, so one idle worker is acted on once however many
replicas run. Both are opt-in, share a fleet-wide cap of actions an hour, and go through the
`ActionExecutor` (recorded before they are attempted).

- Auto-pause: the worker's `idle.pause_at` has passed (idle for the grace after its `idle`
  alert fired, the fleet setting and the worker's switch on, not snoozed) → its labs are read
  once more → `StopInstances`, unless a lab started meanwhile. A dry run is recorded once per
  idle period.
- Remediation: status check impaired for N collections in a row → `RebootInstances`, at most
  once per cooldown per worker, never on a worker an open silence covers. A reboot after which
  the check stays impaired is marked `failed` ("did not help") and not repeated: a person looks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import Worker, WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.actions import AUTO, Action, ActionKind, ActionReason, ActionResult

from .executor import ActionExecutor, ActionInFlight, ActionNotAllowed
from .ports import ActionStore, Controllers, Silences

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActionSettings:
    auto_pause: bool = False
    dry_run: bool = False
    remediation: bool = False
    remediation_after_samples: int = 3
    remediation_cooldown: timedelta = timedelta(hours=1)
    max_per_hour: int = 20


class AutomaticActions:
    def __init__(
        self,
        executor: ActionExecutor,
        store: ActionStore,
        silences: Silences,
        controllers: Controllers | None,
        settings: ActionSettings,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._executor = executor
        self._store = store
        self._silences = silences
        self._controllers = controllers
        self._settings = settings
        self._clock = clock

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        now = self._clock()
        running = [e for e in events if e.status is WorkerStatus.RUNNING]
        to_pause = [e for e in running if self._pause_due(e, now)] if self._settings.auto_pause else []
        to_reboot = (
            [e for e in running if e.impaired_samples >= self._settings.remediation_after_samples]
            if self._settings.remediation
            else []
        )
        if not to_pause and not to_reboot:
            return
        budget = self._settings.max_per_hour - await self._store.count_automatic_since(
            now - timedelta(hours=1)
        )
        budget = await self._pause(to_pause, budget, now)
        await self._remediate(to_reboot, budget, now)

    @staticmethod
    def _pause_due(event: WorkerMetricsCollected, now: datetime) -> bool:
        pause_at = event.idle.pause_at
        return event.auto_pause and event.idle.idle and pause_at is not None and pause_at <= now

    async def _pause(self, events: list[WorkerMetricsCollected], budget: int, now: datetime) -> int:
        if not events:
            return budget
        dry_run = self._settings.dry_run
        latest = await self._store.latest([e.worker_id for e in events], ActionKind.STOP) if dry_run else {}
        for event in events:
            done = latest.get(event.worker_id)
            if (
                dry_run
                and done
                and done.dry_run
                and event.idle.idle_since
                and done.requested_at >= event.idle.idle_since
            ):
                continue  # this idle period's dry run is on record already
            if not dry_run and budget <= 0:
                logger.warning(
                    "Auto-pause of %s held back: %d automatic actions this hour",
                    event.worker_name,
                    self._settings.max_per_hour,
                )
                continue
            worker = await self._executor.workers.get_by_id_async(event.worker_id)
            pause_at = worker.idle.pause_at if worker is not None else None
            if worker is None or pause_at is None or pause_at > now:
                continue  # paused by another replica meanwhile, or started by hand: not due any more
            action = await self._act(worker, ActionKind.STOP, ActionReason.IDLE, dry_run=dry_run)
            if action is not None and not dry_run and action.result is not ActionResult.SKIPPED:
                budget -= 1
        return budget

    async def _remediate(self, events: list[WorkerMetricsCollected], budget: int, now: datetime) -> None:
        if not events:
            return
        silences = await self._silences.list_silences(active_at=now)
        latest = await self._store.latest([e.worker_id for e in events], ActionKind.REBOOT)
        for event in events:
            if any(s.matches(event.worker_id, "status_check") for s in silences):
                continue  # an operator is on it
            worker = await self._executor.workers.get_by_id_async(event.worker_id)
            if worker is None or worker.impaired_samples < self._settings.remediation_after_samples:
                continue  # rebooted meanwhile (the count starts again from a reboot)
            last = latest.get(event.worker_id)
            if last is not None and await self._after_reboot(last, worker, now):
                continue
            if budget <= 0:
                logger.warning(
                    "Reboot of %s held back: %d automatic actions this hour",
                    worker.name,
                    self._settings.max_per_hour,
                )
                continue
            if await self._act(worker, ActionKind.REBOOT, ActionReason.STATUS_CHECK_IMPAIRED) is not None:
                budget -= 1

    async def _after_reboot(self, last: Action, worker: Worker, now: datetime) -> bool:
        """Whether an earlier reboot holds this one back (cooldown, or it did not help)."""
        if last.reason is ActionReason.STATUS_CHECK_IMPAIRED and last.result is ActionResult.FAILED:
            return True  # it did not help once: no loop of reboots
        if now - last.requested_at >= self._settings.remediation_cooldown:
            return False
        if last.reason is ActionReason.STATUS_CHECK_IMPAIRED and last.result is ActionResult.OK:
            await self._executor.mark(
                last,
                ActionResult.FAILED,
                f"did not help: status check impaired {worker.impaired_samples} collections after the reboot",
                worker,
            )
        return True

    async def _act(
        self, worker: Worker, kind: ActionKind, reason: ActionReason, *, dry_run: bool = False
    ) -> Action | None:
        last_check = (lambda: self._labs_now(worker)) if kind is ActionKind.STOP else None
        try:
            return await self._executor.run(
                worker, kind, reason, AUTO, dry_run=dry_run, last_check=last_check
            )
        except (ActionInFlight, ActionNotAllowed) as exc:
            logger.info("Automatic %s of %s not taken: %s", kind.value, worker.name, exc)
            return None

    async def _labs_now(self, worker: Worker) -> str | None:
        """Read the labs right before a stop: a lab started during the grace wins."""
        if self._controllers is None or not worker.cml_url:
            return "no controller to ask whether labs run"
        reading = await self._controllers.read_controller(worker.cml_url, fresh_labs=True)
        started = reading.values.get("labs_started")
        if started is None:
            return f"labs could not be read right before the stop: {'; '.join(reading.errors) or 'no answer'}"
        if started > 0:
            return f"{started} lab(s) started during the grace"
        return None
