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
- Notices: when the grace starts, a CML system notice tells the controller's users when and why
  the worker will pause and how to keep it (start a lab); it is removed when the worker is used
  again (no longer due to pause) or right before the stop, which notes it in the action's
  detail. A dry run posts nothing; a notice that cannot be posted or removed never holds a
  pause back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import Worker, WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.actions import AUTO, Action, ActionKind, ActionReason, ActionResult

from .executor import ActionExecutor, ActionInFlight, ActionNotAllowed
from .ports import ActionStore, Controllers, Notices, Silences

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActionSettings:
    auto_pause: bool = False
    dry_run: bool = False
    remediation: bool = False
    remediation_after_samples: int = 3
    remediation_cooldown: timedelta = timedelta(hours=1)
    max_per_hour: int = 20
    notice: bool = True  # post a CML system notice when the grace starts


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
        notices: Notices | None = None,
    ) -> None:
        self._notices = notices
        self._executor = executor
        self._store = store
        self._silences = silences
        self._controllers = controllers
        self._settings = settings
        self._clock = clock

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        now = self._clock()
        running = [e for e in events if e.status is WorkerStatus.RUNNING]
        if self._notices is not None:
            await self._manage_notices(running, now)
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

    def _notice_wanted(self, event: WorkerMetricsCollected, now: datetime) -> bool:
        """In the grace before a real pause: the users should know."""
        pause_at = event.idle.pause_at
        return (
            self._settings.auto_pause
            and self._settings.notice
            and not self._settings.dry_run
            and event.auto_pause
            and event.idle.idle
            and pause_at is not None
            and pause_at > now
        )

    async def _manage_notices(self, events: list[WorkerMetricsCollected], now: datetime) -> None:
        for event in events:
            wanted = self._notice_wanted(event, now)
            if wanted and event.idle.notice_id is None:
                await self._post_notice(event.worker_id, now)
            elif event.idle.notice_id is not None and event.idle.pause_at is None:
                await self._remove_notice(event.worker_id, "used again")  # or snoozed, or opted out

    async def _post_notice(self, worker_id: str, now: datetime) -> None:
        assert self._notices is not None
        worker = await self._executor.workers.get_by_id_async(worker_id)
        if worker is None or not worker.cml_url or worker.idle.notice_id or worker.idle.pause_at is None:
            return
        label, content = pause_notice(worker.idle.idle_since or now, worker.idle.pause_at)
        try:
            notice_id = await self._notices.post_notice(
                worker.cml_url, level="WARNING", label=label, content=content
            )
        except Exception as exc:  # a notice is a courtesy: never in the pause's way
            logger.warning("Pause notice for %s not posted: %s", worker.name, exc)
            return
        worker.idle = replace(worker.idle, notice_id=notice_id)
        await self._executor.workers.update_async(worker)
        logger.info(
            "Pause notice posted on %s (%s), pause at %s", worker.name, notice_id, worker.idle.pause_at
        )

    async def _remove_notice(self, worker_id: str, why: str) -> None:
        worker = await self._executor.workers.get_by_id_async(worker_id)
        if worker is None or worker.idle.notice_id is None:
            return
        if await self._delete_notice(worker) is None:
            await self._executor.workers.update_async(worker)
            logger.info("Pause notice on %s removed: %s", worker.name, why)

    async def _delete_notice(self, worker: Worker) -> str | None:
        """Remove the worker's notice (its id cleared on `worker`); None, or why it stayed."""
        notice_id = worker.idle.notice_id
        if notice_id is None:
            return None
        if self._notices is None or not worker.cml_url:
            return "no controller to remove it from"
        try:
            await self._notices.delete_notice(worker.cml_url, notice_id)
        except Exception as exc:
            logger.warning("Pause notice on %s not removed: %s", worker.name, exc)
            return str(exc)
        worker.idle = replace(worker.idle, notice_id=None)
        return None

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
        notes: list[str] = []
        notice_id = worker.idle.notice_id

        async def last_check() -> str | None:
            refusal = await self._labs_now(worker)
            if refusal is None and notice_id is not None and not dry_run:
                problem = await self._delete_notice(worker)  # saved with the worker by the stop
                notes.append(
                    f"users were told by CML system notice {notice_id}, removed before the stop"
                    if problem is None
                    else f"users were told by CML system notice {notice_id}; not removed: {problem}"
                )
            return refusal

        try:
            action = await self._executor.run(
                worker,
                kind,
                reason,
                AUTO,
                dry_run=dry_run,
                last_check=last_check if kind is ActionKind.STOP else None,
            )
        except (ActionInFlight, ActionNotAllowed) as exc:
            logger.info("Automatic %s of %s not taken: %s", kind.value, worker.name, exc)
            return None
        if notes:
            action = replace(action, detail="; ".join(filter(None, [action.detail, *notes]))[:1000])
            await self._store.finish(action)
        return action

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


def pause_notice(idle_since: datetime, pause_at: datetime) -> tuple[str, str]:
    """The notice's label and content: when and why the worker pauses, and how to keep it."""
    label = f"This CML server pauses at {pause_at:%H:%M} UTC"
    content = (
        f"Nobody has used this CML server since {idle_since:%Y-%m-%d %H:%M} UTC (no lab started, "
        f"no user activity), so it will be paused (its cloud instance stopped, to save cost) at "
        f"{pause_at:%Y-%m-%d %H:%M} UTC. To keep it running, start a lab before then. "
        "Labs and their configurations are kept; an administrator can start it again."
    )
    return label, content
