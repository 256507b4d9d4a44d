"""The audit trail of actions, and what auto-pause saved: the fleet's hours running, idle, paused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cml_monitor.domain import WorkerStatus
from cml_monitor.domain.actions import Action, ActionKind, ActionResult
from cml_monitor.storage import CMLWorkerRepository
from cml_monitor.storage.actions import ActionRepository

from .errors import InvalidInput


@dataclass(frozen=True, slots=True)
class FleetSummary:
    workers: int
    by_status: dict[str, int]
    idle: int
    running_hours: float
    idle_hours: float
    paused_hours: float


class ActionOperations:
    def __init__(self, actions: ActionRepository, repository: CMLWorkerRepository) -> None:
        self._actions = actions
        self._repository = repository

    async def list(
        self, *, worker_id: str | None, kind: str | None, result: str | None = None, limit: int
    ) -> list[Action]:
        if kind is not None and kind not in {k.value for k in ActionKind}:
            raise InvalidInput("kind", "must be stop, start or reboot")
        if result is not None and result not in {r.value for r in ActionResult}:
            raise InvalidInput("result", "must be pending, ok, failed, dry_run or skipped")
        return await self._actions.list(worker_id=worker_id, kind=kind, result=result, limit=limit)

    async def summary(self) -> FleetSummary:
        by_status: dict[str, int] = {}
        idle = 0
        hours: dict[str, float] = {"running": 0.0, "idle": 0.0, "paused": 0.0}
        offset, page = 0, 1000
        while True:
            workers, total = await self._repository.list_async(limit=page, offset=offset)
            for worker in workers:
                by_status[worker.status.value] = by_status.get(worker.status.value, 0) + 1
                idle += worker.idle.idle and worker.status is WorkerStatus.RUNNING
                hours["running"] += worker.idle.running_seconds / 3600
                hours["idle"] += worker.idle.idle_seconds / 3600
                hours["paused"] += worker.idle.paused_seconds / 3600
            offset += page
            if offset >= total or not workers:
                break
        rounded: dict[str, Any] = {k: round(v, 2) for k, v in hours.items()}
        return FleetSummary(
            workers=sum(by_status.values()),
            by_status=by_status,
            idle=idle,
            running_hours=rounded["running"],
            idle_hours=rounded["idle"],
            paused_hours=rounded["paused"],
        )
