"""`ActionRepository`: the audit trail of stops, starts and reboots (implements the actions' store)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.domain.actions import AUTO, Action, ActionKind, ActionReason, ActionResult

from .tables import actions


def _to_action(row: Any) -> Action:
    data = dict(row._mapping)
    data["kind"] = ActionKind(data["kind"])
    data["reason"] = ActionReason(data["reason"])
    data["result"] = ActionResult(data["result"])
    return Action(**data)


def _record(action: Action) -> dict[str, Any]:
    record = asdict(action)
    for name in ("kind", "reason", "result"):
        record[name] = record[name].value
    return record


class ActionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, action: Action) -> bool:
        """Write a pending action; False when the worker already has one in flight."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(actions).values(**_record(action)))
        except IntegrityError:
            return False
        return True

    async def finish(self, action: Action) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(actions)
                .where(actions.c.id == action.id)
                .values(result=action.result.value, detail=action.detail, finished_at=action.finished_at)
            )

    async def renew(self, action_id: str, owner: str, until: datetime) -> bool:
        """Extend the owner's lease on its pending action; False once it is no longer its own."""
        query = (
            update(actions)
            .where(
                actions.c.id == action_id,
                actions.c.owner == owner,
                actions.c.result == ActionResult.PENDING.value,
            )
            .values(lease_until=until)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def settle(self, action: Action, now: datetime) -> bool:
        """Finish a pending action of a replica gone silent, only if its lease is still expired.

        The condition is checked in the same statement as the write: an owner that renewed its
        lease in the meantime keeps its action.
        """
        query = (
            update(actions)
            .where(
                actions.c.id == action.id,
                actions.c.result == ActionResult.PENDING.value,
                or_(actions.c.lease_until.is_(None), actions.c.lease_until <= now),
            )
            .values(result=action.result.value, detail=action.detail, finished_at=action.finished_at)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def list(
        self,
        *,
        worker_id: str | None = None,
        kind: str | None = None,
        result: str | None = None,
        limit: int = 100,
    ) -> list[Action]:
        conditions = []
        if worker_id is not None:
            conditions.append(actions.c.worker_id == worker_id)
        if kind is not None:
            conditions.append(actions.c.kind == kind)
        if result is not None:
            conditions.append(actions.c.result == result)
        query = select(actions).where(*conditions).order_by(actions.c.requested_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_to_action(row) for row in await conn.execute(query)]

    async def pending(self) -> list[Action]:
        query = select(actions).where(actions.c.result == ActionResult.PENDING.value)
        async with self._engine.connect() as conn:
            return [_to_action(row) for row in await conn.execute(query)]

    async def latest(self, worker_ids: Sequence[str], kind: ActionKind) -> dict[str, Action]:
        """Each worker's latest action of this kind (for cooldowns and "did it help")."""
        found: dict[str, Action] = {}
        ids = list(dict.fromkeys(worker_ids))
        async with self._engine.connect() as conn:
            for start in range(0, len(ids), 900):
                query = (
                    select(actions)
                    .where(actions.c.worker_id.in_(ids[start : start + 900]), actions.c.kind == kind.value)
                    .order_by(actions.c.requested_at)
                )
                for row in await conn.execute(query):
                    found[row.worker_id] = _to_action(row)
        return found

    async def count_automatic_since(self, since: datetime) -> int:
        """Automatic actions that touched (or tried to touch) an instance since then."""
        query = (
            select(func.count())
            .select_from(actions)
            .where(
                actions.c.actor == AUTO,
                actions.c.dry_run.is_(False),
                actions.c.requested_at >= since,
                actions.c.result.in_(
                    [r.value for r in (ActionResult.PENDING, ActionResult.OK, ActionResult.FAILED)]
                ),
            )
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
