"""Keeps Alertmanager's view of our firing alerts alive by posting them again every interval.

Alertmanager forgets an alert at its `endsAt` (or after its `resolve_timeout` when none is
given). The outbox tells it once when an alert fires and once when it resolves, durably and in
order; this loop re-posts what is still firing every `refresh` seconds, all alerts in one
request per Alertmanager, with `endsAt` four intervals ahead. A failed re-post is not retried
on its own: the next interval is the retry, and the alert stays active meanwhile because its
last `endsAt` is still ahead. Silenced and acknowledged alerts are not re-posted (the operator
said "don't tell me"), so they lapse in Alertmanager as they would in chat.

Posting the same label set again is idempotent in Alertmanager, so several collector replicas
running this loop side by side only repeat one another. One race is closed by hand: an alert
that resolved (and whose resolution was delivered) while its re-post was in flight would be
revived by that late re-post, so after each round the alerts that stopped firing meanwhile are
posted again as resolved.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import Alert, AlertState, Silence, WorkerRef

from .notifiers.alertmanager import AlertmanagerNotifier
from .outbox import alert_payload
from .silences import is_silenced

logger = logging.getLogger(__name__)


class FiringAlerts(Protocol):
    async def notified_firing(self) -> list[tuple[Alert, WorkerRef | None]]:
        """Firing alerts somebody was told of and nobody acknowledged, each with its worker
        (None for a fleet-level alert)."""
        ...

    async def get_alert(self, alert_id: str) -> Alert | None:
        """The alert as stored now; None when it is gone."""
        ...

    async def list_silences(self, *, active_at: Any = None) -> list[Silence]:
        """Silences, newest first; only those in force at `active_at` when given."""
        ...


class AlertmanagerRefresher:
    def __init__(
        self,
        store: FiringAlerts,
        notifier: AlertmanagerNotifier,
        urls: list[str],
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._urls = urls
        self._clock = clock
        self._failing: set[str] = set()

    @property
    def interval(self) -> float:
        return self._notifier.refresh

    async def refresh(self) -> int:
        """Post every alert still firing to every Alertmanager; how many alerts were posted."""
        now = self._clock()
        silences = await self._store.list_silences(active_at=now)
        firing = [
            (alert, worker)
            for alert, worker in await self._store.notified_firing()
            if not is_silenced(silences, alert.worker_id, alert.kind.value, now)
        ]
        if not firing:
            return 0
        await self._post([alert_payload("alert.firing", alert, worker, now) for alert, worker in firing])
        still = {alert.id for alert, _ in await self._store.notified_firing()}
        ended = []
        for alert, worker in firing:
            if alert.id not in still:
                current = await self._store.get_alert(alert.id)
                if current is not None and current.state is AlertState.RESOLVED:
                    ended.append(alert_payload("alert.resolved", current, worker, self._clock()))
        if ended:
            await self._post(ended)
        return len(firing)

    async def _post(self, payloads: list[dict[str, Any]]) -> None:
        for url in self._urls:
            result = await self._notifier.post(url, payloads)
            if result.ok and url in self._failing:
                self._failing.discard(url)
                logger.info("Alertmanager %s takes our alerts again", url)
            elif not result.ok and url not in self._failing:
                self._failing.add(url)
                logger.warning(
                    "Could not re-post %d alerts to Alertmanager %s: %s", len(payloads), url, result.error
                )
