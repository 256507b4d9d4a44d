"""`ActionExecutor`: the one path every stop, start and reboot takes, by hand or automatic.

Record the action (`pending`) → last-moment check (for an auto-pause: are labs running now?)
→ the AWS call, unless it is a dry run → the result, recorded. One action in flight per worker
(the store refuses a second pending one, whatever the number of replicas). A crash between
"recorded" and "done" leaves the pending row; `reconcile()` at the next start settles it
against what EC2 shows.

Each executor is one replica's: the pending row names it as owner and carries a lease that the
executor renews while it acts. `reconcile()` settles only rows whose lease ran out, so a
replica that starts during a rolling restart leaves alone what another, live replica is doing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import Worker
from cml_monitor.domain.actions import Action, ActionKind, ActionReason, ActionResult
from cml_monitor.domain.idle import IdlePolicy

from .ports import ActionStore, Instances, Workers

logger = logging.getLogger(__name__)

# The EC2 states each action makes sense from.
ALLOWED_FROM = {
    ActionKind.STOP: frozenset({"running", "pending"}),
    ActionKind.START: frozenset({"stopped"}),
    ActionKind.REBOOT: frozenset({"running"}),
}
# What EC2 shows once the action was done, for reconciling after a crash.
DONE_STATES = {
    ActionKind.STOP: frozenset({"stopping", "stopped"}),
    ActionKind.START: frozenset({"pending", "running"}),
}

LastCheck = Callable[[], Awaitable[str | None]]
ACTION_LEASE = timedelta(seconds=60)  # an AWS call with its retries ends well within this


def replica_id() -> str:
    """This process, as owner of the actions it runs: readable in the audit trail, and unique."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _fields(action: Action, worker: Worker) -> dict[str, object]:
    """The structured fields of an action's log lines, for a shipper to index."""
    return {
        "action_id": action.id,
        "action": action.kind.value,
        "reason": action.reason.value,
        "result": action.result.value,
        "actor": action.actor,
        "worker_id": worker.id,
        "worker_name": worker.name,
        "instance_id": worker.aws_instance_id,
        "region": worker.aws_region,
    }


class ActionNotAllowed(Exception):
    """The worker's state does not allow this action (stop a stopped worker, say)."""


class ActionInFlight(Exception):
    """Another action on this worker has not finished yet."""


class ActionExecutor:
    def __init__(
        self,
        store: ActionStore,
        workers: Workers,
        instances: Instances,
        *,
        idle_policy: IdlePolicy = IdlePolicy(),
        clock: Clock = utcnow,
        notify: Callable[[Action, Worker], Awaitable[None]] | None = None,
        on_result: Callable[[Action], None] | None = None,
        owner: str | None = None,
        lease: timedelta = ACTION_LEASE,
    ) -> None:
        self.store = store
        self.owner = owner or replica_id()
        self._lease = lease
        self.workers = workers
        self._instances = instances
        self._idle_policy = idle_policy
        self._clock = clock
        self._notify = notify
        self._on_result = on_result

    async def run(
        self,
        worker: Worker,
        kind: ActionKind,
        reason: ActionReason,
        actor: str,
        *,
        dry_run: bool = False,
        last_check: LastCheck | None = None,
        comment: str | None = None,
    ) -> Action:
        state = worker.ec2_instance_state or "unknown"
        if state not in ALLOWED_FROM[kind]:
            raise ActionNotAllowed(
                f"cannot {kind.value} {worker.name} ({worker.aws_instance_id}): its instance is {state}"
            )
        now = self._clock()
        action = Action.request(
            worker.id,
            kind,
            reason,
            actor,
            dry_run=dry_run,
            now=now,
            owner=self.owner,
            lease_until=now + self._lease,
            comment=comment,
        )
        if not await self.store.record(action):
            raise ActionInFlight(f"worker {worker.id} has an action in flight")
        logger.info(
            "%s of worker %s (%s) recorded: %s by %s%s",
            kind.value.capitalize(),
            worker.name,
            worker.aws_instance_id,
            reason.value,
            actor,
            " (dry run)" if dry_run else "",
            extra=_fields(action, worker),
        )
        renewing = asyncio.ensure_future(self._renew(action))
        try:
            action = await self._attempt(worker, action, last_check)
        except Exception as exc:  # the outcome is recorded whatever went wrong
            logger.exception(
                "%s of worker %s (%s) failed",
                kind.value.capitalize(),
                worker.name,
                worker.aws_instance_id,
                extra=_fields(action, worker),
            )
            action = action.finish(ActionResult.FAILED, f"{type(exc).__name__}: {exc}"[:1000], self._clock())
        finally:
            renewing.cancel()
        await self._finish(action, worker)
        return action

    async def _renew(self, action: Action) -> None:
        """Keep the lease on a running action alive, a third of the lease at a time."""
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            try:
                await self.store.renew(action.id, self.owner, self._clock() + self._lease)
            except Exception as exc:  # the next renewal may get through; the action goes on
                logger.warning("Could not renew the lease on action %s: %s", action.id, exc)

    async def _attempt(self, worker: Worker, action: Action, last_check: LastCheck | None) -> Action:
        if last_check is not None:
            refusal = await last_check()
            if refusal is not None:
                return action.finish(ActionResult.SKIPPED, refusal, self._clock())
        if action.dry_run:
            return action.finish(ActionResult.DRY_RUN, "dry run: every step but the AWS call", self._clock())
        if action.kind is ActionKind.STOP:
            worker.stop_requested_at = self._clock()  # so the stop is not "unexpected"
            await self.workers.update_async(worker)
        state = await self._instances.change_instance_state(
            worker.aws_region, worker.aws_instance_id, action.kind.value
        )
        now = self._clock()
        if action.kind is ActionKind.STOP and action.reason is ActionReason.IDLE:
            worker.idle = replace(worker.idle, paused_by_us=True, pause_at=None)
        elif action.kind is ActionKind.START:
            worker.stop_requested_at = None
            worker.idle = worker.idle.snooze(now, self._idle_policy)
        elif action.kind is ActionKind.REBOOT:
            worker.impaired_samples = 0  # count again from the reboot: did it help?
        await self.workers.update_async(worker)
        return action.finish(ActionResult.OK, f"EC2 reports the instance {state}", now)

    async def _finish(self, action: Action, worker: Worker) -> None:
        await self.store.finish(action)
        await self._announce(action, worker)

    async def _announce(self, action: Action, worker: Worker) -> None:
        """A finished action: logged, counted and, when automatic, notified."""
        logger.info(
            "%s of worker %s (%s): %s (%s)",
            action.kind.value.capitalize(),
            worker.name,
            worker.aws_instance_id,
            action.result.value,
            action.detail,
            extra=_fields(action, worker),
        )
        if self._on_result is not None:
            self._on_result(action)
        if self._notify is not None and action.automatic:
            try:
                await self._notify(action, worker)
            except Exception:
                logger.exception("Could not queue the notification of action %s", action.id)

    async def mark(self, action: Action, result: ActionResult, detail: str, worker: Worker) -> Action:
        """Settle an earlier action with what we learnt since (a reboot that did not help)."""
        settled = action.finish(result, detail, self._clock())
        await self._finish(settled, worker)
        return settled

    async def settle_interrupted(self) -> None:
        """At start and every lease after: `reconcile()`, logged; a failure is logged and left
        to the next time."""
        try:
            settled = await self.reconcile()
        except Exception as exc:
            logger.error("Could not reconcile interrupted actions: %s", exc)
            return
        if settled:
            logger.warning("Settled %d action(s) interrupted by a replica's stop", settled)

    async def reconcile(self) -> int:
        """Settle the actions a crash left pending, from what EC2 shows now.

        Only actions whose owner's lease ran out: a live replica's action is its own to finish.
        """
        settled = 0
        for action in await self.store.pending():
            now = self._clock()
            if action.owner == self.owner:
                continue  # this process's own action in flight (renewals failed meanwhile?)
            if not action.orphaned(now):
                logger.info(
                    "Action %s is still %s's (lease until %s)", action.id, action.owner, action.lease_until
                )
                continue
            worker = await self.workers.get_by_id_async(action.worker_id)
            if worker is None:
                if await self.store.settle(action.finish(ActionResult.FAILED, "worker removed", now), now):
                    settled += 1
                continue
            try:
                found = await self._instances.describe_instance_statuses(
                    worker.aws_region, [worker.aws_instance_id]
                )
            except Exception as exc:
                logger.warning("Cannot reconcile action %s yet: %s", action.id, exc)
                continue
            status = found.get(worker.aws_instance_id)
            state = getattr(status, "instance_state", None) or "unknown"
            done = DONE_STATES.get(action.kind)
            if done is None:
                result, detail = (
                    ActionResult.FAILED,
                    f"interrupted between recording and the reboot call; the instance is {state}",
                )
            elif state in done:
                result, detail = ActionResult.OK, f"interrupted, but EC2 shows the instance {state}"
            else:
                result, detail = (
                    ActionResult.FAILED,
                    f"interrupted before the AWS call; the instance is {state}",
                )
            now = self._clock()
            finished = action.finish(result, detail, now)
            if not await self.store.settle(finished, now):
                continue  # its owner came back (renewed) or another replica settled it first
            if result is ActionResult.OK:
                await self._apply_done(finished, worker, now)
            await self._announce(finished, worker)
            settled += 1
        return settled

    async def _apply_done(self, action: Action, worker: Worker, now: datetime) -> None:
        """What the normal path records on the worker once EC2 did it, for a reconciled action."""
        fresh = await self.workers.get_by_id_async(worker.id) or worker
        if action.kind is ActionKind.STOP:
            fresh.stop_requested_at = fresh.stop_requested_at or action.requested_at
            if action.reason is ActionReason.IDLE:
                fresh.idle = replace(fresh.idle, paused_by_us=True, pause_at=None)
        elif action.kind is ActionKind.START:
            fresh.stop_requested_at = None
            fresh.idle = fresh.idle.snooze(now, self._idle_policy)
        await self.workers.update_async(fresh)
