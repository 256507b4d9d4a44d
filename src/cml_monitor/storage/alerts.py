"""Alerts, the notification outbox and silences, in the same database as the workers.

Alert changes and the notifications they cause are written in one transaction, so a crash can
never leave an alert "firing" with nobody told, nor a message for an alert that did not change.
Deliveries are claimed with a lease (an UPDATE that only one replica can win), so several
replicas can dispatch from one outbox, and a dispatcher killed mid-send is retried when its
lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cml_monitor.domain import Alert, AlertKind, AlertState, OutboxMessage, Silence, WorkerRef

from .rows import RejectListener, refused, write_each
from .tables import alerts, notifications, silences, workers

_ALERT_FIELDS = tuple(f.name for f in fields(Alert))


def _to_alert(row: Any) -> Alert:
    data = {name: row._mapping[name] for name in _ALERT_FIELDS}
    data["kind"] = AlertKind(data["kind"])
    data["state"] = AlertState(data["state"])
    return Alert(**data)


def _alert_record(alert: Alert) -> dict[str, Any]:
    record = {name: getattr(alert, name) for name in _ALERT_FIELDS}
    record["kind"] = alert.kind.value
    record["state"] = alert.state.value
    return record


def _to_silence(row: Any) -> Silence:
    return Silence(**{name: row._mapping[name] for name in (f.name for f in fields(Silence))})


@dataclass(slots=True)
class _Changes:
    """The alert changes and notifications of one worker (or of the fleet, worker None)."""

    worker_id: str | None
    inserted: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)


class AlertRepository:
    def __init__(self, engine: AsyncEngine, *, on_rejected: RejectListener | None = None) -> None:
        self._engine = engine
        self._on_rejected = on_rejected  # told the table of each row the database refused

    # -- alerts ----------------------------------------------------------------------------

    async def active_for_workers(self, worker_ids: Sequence[str]) -> dict[tuple[str, str], Alert]:
        found: dict[tuple[str, str], Alert] = {}
        ids = list(dict.fromkeys(worker_ids))
        async with self._engine.connect() as conn:
            for start in range(0, len(ids), 900):
                query = select(alerts).where(
                    alerts.c.worker_id.in_(ids[start : start + 900]),
                    alerts.c.state != AlertState.RESOLVED.value,
                )
                for row in await conn.execute(query):
                    found[(row.worker_id, row.kind)] = _to_alert(row)
        return found

    async def active_for_regions(self, kind: AlertKind) -> dict[str, Alert]:
        query = select(alerts).where(
            alerts.c.worker_id.is_(None),
            alerts.c.kind == kind.value,
            alerts.c.state != AlertState.RESOLVED.value,
        )
        async with self._engine.connect() as conn:
            return {row.region: _to_alert(row) for row in await conn.execute(query)}

    async def apply(
        self,
        inserted: Sequence[Alert],
        updated: Sequence[Alert],
        deleted: Sequence[str],
        outbox: Sequence[OutboxMessage],
    ) -> None:
        """Alert changes and their notifications, all or nothing.

        When the database refuses a value, they are written again worker by worker, each
        worker's alerts with their notifications (still all or nothing): only the worker whose
        row was refused loses this cycle's changes (logged, counted); the others are written.
        """
        try:
            await self._apply(_Changes(None, list(inserted), list(updated), list(deleted), list(outbox)))
            return
        except SQLAlchemyError as exc:
            if not refused(exc):
                raise
        groups: dict[str | None, _Changes] = {}
        for alert in inserted:
            groups.setdefault(alert.worker_id, _Changes(alert.worker_id)).inserted.append(alert)
        for alert in updated:
            groups.setdefault(alert.worker_id, _Changes(alert.worker_id)).updated.append(alert)
        for message in outbox:
            groups.setdefault(message.worker_id, _Changes(message.worker_id)).outbox.append(message)
        deletions = [_Changes(None, deleted=list(deleted))] if deleted else []
        await write_each(
            [*deletions, *groups.values()],
            self._apply,
            what=lambda changes: f"worker {changes.worker_id}" if changes.worker_id else "the fleet",
            table="alerts",
            on_rejected=self._on_rejected,
        )

    async def _apply(self, changes: _Changes) -> None:
        async with self._engine.begin() as conn:
            if changes.deleted:
                await conn.execute(delete(alerts).where(alerts.c.id.in_(changes.deleted)))
            if changes.inserted:
                await conn.execute(insert(alerts), [_alert_record(a) for a in changes.inserted])
            for alert in changes.updated:
                record = _alert_record(alert)
                record.pop("id")
                await conn.execute(update(alerts).where(alerts.c.id == alert.id).values(**record))
            if changes.outbox:
                await conn.execute(
                    insert(notifications), [_pending_row(message) for message in changes.outbox]
                )

    async def list_alerts(
        self,
        *,
        state: str | None = None,
        worker_id: str | None = None,
        kind: str | None = None,
        limit: int = 500,
    ) -> list[Alert]:
        conditions = []
        if state is not None:
            conditions.append(alerts.c.state == state)
        if worker_id is not None:
            conditions.append(alerts.c.worker_id == worker_id)
        if kind is not None:
            conditions.append(alerts.c.kind == kind)
        query = select(alerts).where(*conditions).order_by(alerts.c.updated_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_to_alert(row) for row in await conn.execute(query)]

    async def get_alert(self, alert_id: str) -> Alert | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
        return _to_alert(row) if row else None

    async def acknowledge(
        self, alert_id: str, comment: str | None, now: datetime, actor: str | None = None
    ) -> Alert | None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id)
                .values(
                    acknowledged_at=now, acknowledged_comment=comment, acknowledged_by=actor, updated_at=now
                )
            )
        return await self.get_alert(alert_id)

    async def count_firing(self) -> int:
        query = select(func.count()).select_from(alerts).where(alerts.c.state == AlertState.FIRING.value)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def firing(self) -> list[tuple[str | None, str | None, str]]:
        """The firing alerts as (worker id, worker name, kind), for the Prometheus gauges."""
        query = (
            select(alerts.c.worker_id, workers.c.name, alerts.c.kind)
            .select_from(alerts.outerjoin(workers, workers.c.id == alerts.c.worker_id))
            .where(alerts.c.state == AlertState.FIRING.value)
        )
        async with self._engine.connect() as conn:
            return [(row[0], row[1], row[2]) for row in (await conn.execute(query)).all()]

    async def notified_firing(self) -> list[tuple[Alert, WorkerRef | None]]:
        """Firing alerts somebody was told of and nobody acknowledged, each with its worker
        (None for a fleet-level alert, or a worker since removed)."""
        query = (
            select(alerts, workers.c.name, workers.c.aws_instance_id, workers.c.aws_region)
            .select_from(alerts.outerjoin(workers, workers.c.id == alerts.c.worker_id))
            .where(
                alerts.c.state == AlertState.FIRING.value,
                alerts.c.last_notified_at.is_not(None),
                alerts.c.acknowledged_at.is_(None),
            )
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            (
                _to_alert(row),
                None
                if row.worker_id is None or row.name is None
                else WorkerRef(row.worker_id, row.name, row.aws_instance_id, row.aws_region),
            )
            for row in rows
        ]

    async def stale_workers(self, cutoff: datetime) -> list[tuple[WorkerRef, datetime | None]]:
        """Workers (not terminated) with no successful collection since `cutoff`."""
        last_seen = func.coalesce(workers.c.last_collected_at, workers.c.created_at)
        columns = (workers.c.id, workers.c.name, workers.c.aws_instance_id, workers.c.aws_region)
        query = select(*columns, workers.c.last_collected_at).where(
            workers.c.status != "terminated", last_seen < cutoff
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(WorkerRef(*row[:4]), row.last_collected_at) for row in rows]

    # -- silences --------------------------------------------------------------------------

    async def add_silence(self, silence: Silence) -> Silence:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(silences).values(**{f.name: getattr(silence, f.name) for f in fields(Silence)})
            )
        return silence

    async def get_silence(self, silence_id: str) -> Silence | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(silences).where(silences.c.id == silence_id))).first()
        return _to_silence(row) if row else None

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        query = select(silences).order_by(silences.c.created_at.desc())
        if active_at is not None:
            query = query.where(silences.c.starts_at <= active_at, silences.c.ends_at > active_at)
        async with self._engine.connect() as conn:
            return [_to_silence(row) for row in await conn.execute(query)]

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(silences)
                .where(silences.c.id == silence_id, silences.c.ends_at > now)
                .values(ends_at=now)
            )
            if result.rowcount:
                return True
            exists = (await conn.execute(select(silences.c.id).where(silences.c.id == silence_id))).first()
        return exists is not None

    # -- outbox ----------------------------------------------------------------------------

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """The head of each (receiver, worker) queue, when due and not leased, leased to us.

        A row is a head when no older pending row exists for the same channel, target and
        worker: messages about one worker reach one receiver in the order they happened, and a
        message being retried holds back the ones after it.
        """
        older = notifications.alias("older")
        same_worker = or_(
            older.c.worker_id == notifications.c.worker_id,
            and_(older.c.worker_id.is_(None), notifications.c.worker_id.is_(None)),
        )
        earlier = or_(
            older.c.created_at < notifications.c.created_at,
            and_(older.c.created_at == notifications.c.created_at, older.c.ordinal < notifications.c.ordinal),
        )
        is_head = ~exists().where(
            older.c.state == "pending",
            older.c.channel == notifications.c.channel,
            older.c.target == notifications.c.target,
            same_worker,
            earlier,
        )
        free = or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < now)
        due = and_(notifications.c.state == "pending", notifications.c.next_attempt_at <= now, free)
        async with self._engine.begin() as conn:
            candidates = (
                (
                    await conn.execute(
                        select(notifications.c.id)
                        .where(due, is_head)
                        .order_by(notifications.c.next_attempt_at)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            return await _lease(conn, candidates, due, lease_until)

    async def claim_queued(
        self, channel: str, target: str, now: datetime, lease_until: datetime, *, exclude: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Every other pending, unleased row for this receiver, due or not, leased to us.

        For receivers that take a group in one message: what is queued for them when a group
        goes out joins it rather than following one message at a time.
        """
        free = or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < now)
        queued = and_(
            notifications.c.state == "pending",
            notifications.c.channel == channel,
            notifications.c.target == target,
            free,
        )
        if exclude:
            queued = and_(queued, notifications.c.id.not_in(list(exclude)))
        async with self._engine.begin() as conn:
            candidates = (
                (await conn.execute(select(notifications.c.id).where(queued).limit(500))).scalars().all()
            )
            return await _lease(conn, candidates, queued, lease_until)

    async def finish(self, notification_id: str, **values: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(notifications)
                .where(notifications.c.id == notification_id)
                .values(lease_until=None, **values)
            )

    async def next_due_at(self) -> datetime | None:
        query = select(func.min(notifications.c.next_attempt_at)).where(notifications.c.state == "pending")
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def list_notifications(self, *, state: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        query = select(notifications).order_by(notifications.c.created_at.desc()).limit(limit)
        if state is not None:
            query = query.where(notifications.c.state == state)
        async with self._engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]


async def _lease(
    conn: AsyncConnection, candidates: Sequence[str], still: Any, lease_until: datetime
) -> list[dict[str, Any]]:
    """Lease each candidate that still meets `still` (an UPDATE only one replica can win); the
    rows won."""
    claimed = []
    for notification_id in candidates:
        won = await conn.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, still)
            .values(lease_until=lease_until)
        )
        if won.rowcount:
            claimed.append(notification_id)
    if not claimed:
        return []
    rows = (await conn.execute(select(notifications).where(notifications.c.id.in_(claimed)))).all()
    return [dict(row._mapping) for row in rows]


def _pending_row(message: OutboxMessage) -> dict[str, Any]:
    """A new message as its row: pending, never tried, due at its `next_attempt_at` (at once
    when it has none)."""
    return {
        **{f.name: getattr(message, f.name) for f in fields(OutboxMessage)},
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": message.next_attempt_at or message.created_at,
        "lease_until": None,
        "last_error": None,
        "sent_at": None,
    }
