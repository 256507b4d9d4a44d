"""Alert use cases: acknowledge, silence, end a silence."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from cml_monitor.clock import Clock
from cml_monitor.domain import Alert, Silence, looks_like_id
from cml_monitor.storage.alerts import AlertRepository

from .errors import InvalidInput, NotFound
from .workers import WorkerOperations


class AlertOperations:
    def __init__(self, alerts: AlertRepository, workers: WorkerOperations, *, clock: Clock) -> None:
        self._alerts = alerts
        self._workers = workers
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    async def list_alerts(
        self, *, state: str | None, worker_id: str | None, kind: str | None, limit: int
    ) -> list[Alert]:
        return await self._alerts.list_alerts(state=state, worker_id=worker_id, kind=kind, limit=limit)

    async def list_silences(self, *, active_only: bool) -> list[Silence]:
        return await self._alerts.list_silences(active_at=self._clock() if active_only else None)

    async def list_notifications(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._alerts.list_notifications(state=state, limit=limit)

    async def get(self, alert_id: str) -> Alert:
        alert = await self._alerts.get_alert(alert_id) if looks_like_id(alert_id) else None
        if alert is None:
            raise NotFound(f"alert {alert_id!r} not found")
        return alert

    async def acknowledge(self, alert_id: str, comment: str | None, actor: str | None = None) -> Alert:
        """The alert keeps its state but is not re-notified while it fires; `actor` is kept."""
        await self.get(alert_id)
        alert = await self._alerts.acknowledge(alert_id, comment, self._clock(), actor)
        if alert is None:
            raise NotFound(f"alert {alert_id!r} not found")
        return alert

    async def silence(
        self,
        *,
        worker_id: str | None,
        kind: str | None,
        starts_at: datetime | None,
        ends_at: datetime,
        comment: str,
    ) -> Silence:
        """Mute a worker, a kind, or a kind on a worker until `ends_at`."""
        now = self._clock()
        starts_at = starts_at or now
        if ends_at <= max(starts_at, now):
            raise InvalidInput("ends_at", "must be in the future and after starts_at")
        if worker_id is not None and not await self._workers.exists(worker_id):
            raise InvalidInput("worker_id", "no such worker")
        silence = Silence(
            id=str(uuid.uuid4()),
            worker_id=worker_id,
            kind=kind,
            starts_at=starts_at,
            ends_at=ends_at,
            comment=comment,
            created_at=now,
        )
        await self._alerts.add_silence(silence)
        return silence

    async def get_silence(self, silence_id: str) -> Silence:
        silence = await self._alerts.get_silence(silence_id) if looks_like_id(silence_id) else None
        if silence is None:
            raise NotFound(f"silence {silence_id!r} not found")
        return silence

    async def end_silence(self, silence_id: str) -> None:
        """End the silence now (it stays listed, expired)."""
        if not looks_like_id(silence_id) or not await self._alerts.expire_silence(silence_id, self._clock()):
            raise NotFound(f"silence {silence_id!r} not found")
