"""`AlertEngine`: metrics events in, alert state and outbox rows out (one transaction a batch).

A region's collection reaches it as one batch, through the notification handler: one query
for the open alerts, one for the silences, one transaction for every change and every message,
however many workers the region has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import Silence

from .outbox import Channel, alert_payload, notification_rows, status_payload
from .rules import RuleSettings
from .silences import is_silenced
from .state import (
    Alert,
    AlertKind,
    AlertState,
    Sample,
    Verdict,
    advance,
    needs_firing_notification,
    needs_resolved_notification,
)
from .store import AlertStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertSettings:
    rules: RuleSettings = field(default_factory=RuleSettings)
    for_samples: int = 1
    repeat_interval: timedelta = timedelta(hours=4)
    unreachable_after: timedelta = timedelta(seconds=900)


class AlertEngine:
    def __init__(
        self,
        store: AlertStore,
        channels: list[Channel],
        settings: AlertSettings = AlertSettings(),
        *,
        clock: Clock = utcnow,
        on_outbox: Callable[[], None] | None = None,
        on_firing_count: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.settings = settings
        self._clock = clock
        self._on_outbox = on_outbox
        self._on_firing_count = on_firing_count

    async def evaluate(self, batch: list[tuple[dict[str, Any], list[Sample]]]) -> None:
        """Evaluate metrics events with their samples; status changes are notified too."""
        await self.process(batch, notify_status=True)

    async def check_unreachable(self) -> int:
        """Raise `unreachable` for workers with no successful collection for too long."""
        now = self._clock()
        stale = await self.store.stale_worker_events(now - self.settings.unreachable_after)
        if stale:
            batch = [
                (event, [Sample(AlertKind.UNREACHABLE, Verdict.VIOLATING, detail=unreachable_detail(event))])
                for event in stale
            ]
            await self.process(batch, notify_status=False)
        return len(stale)

    async def process(self, batch: list[tuple[dict[str, Any], list[Sample]]], *, notify_status: bool) -> None:
        """One transaction for the batch's alert changes and messages.

        Messages are queued in the order things happened for each worker: its status change
        first, then the alerts that change caused (`ordinal` keeps that order in the outbox).
        """
        now = self._clock()
        active = await self.store.active_for_workers([event["worker_id"] for event, _ in batch])
        silences = await self.store.list_silences(active_at=now)
        inserted: dict[str, Alert] = {}
        updated: dict[str, Alert] = {}
        deleted: list[str] = []
        outbox: list[dict[str, Any]] = []
        for event, samples in batch:
            worker_id = event["worker_id"]
            if notify_status and event.get("previous_status") not in (None, "unknown", event.get("status")):
                outbox += notification_rows(
                    status_payload(event, now), self.channels, alert_id=None, worker_id=worker_id, now=now
                )
            for sample in samples:
                key = (worker_id, sample.kind.value)
                before = active.get(key)
                for_samples = (
                    1
                    if sample.kind in (AlertKind.UNEXPECTED_STOP, AlertKind.UNREACHABLE)
                    else self.settings.for_samples
                )
                after = advance(before, sample, worker_id, for_samples=for_samples, now=now)
                if after is None:
                    if before is not None:
                        deleted.append(before.id)
                        del active[key]
                    continue
                after, messages = self._notify(before, after, event, silences, now)
                outbox += messages
                active[key] = after
                if before is None:
                    inserted[after.id] = after
                elif after != before:
                    (inserted if after.id in inserted else updated)[after.id] = after
        for ordinal, row in enumerate(outbox):
            row["ordinal"] = ordinal
        if inserted or updated or deleted or outbox:
            await self.store.apply(list(inserted.values()), list(updated.values()), deleted, outbox)
        if outbox and self._on_outbox is not None:
            self._on_outbox()
        if self._on_firing_count is not None and (inserted or updated or deleted):
            self._on_firing_count(await self.store.count_firing())

    def _notify(
        self,
        before: Alert | None,
        after: Alert,
        event: dict[str, Any],
        silences: list[Silence],
        now: datetime,
    ) -> tuple[Alert, list[dict[str, Any]]]:
        silenced = is_silenced(silences, after.worker_id, after.kind.value, now)
        rows: list[dict[str, Any]] = []
        if after.state is not AlertState.PENDING and (before is None or before.state is not after.state):
            logger.warning(
                "🚨 Alert %s %s for worker %s%s",
                after.kind.value,
                after.state.value,
                after.worker_id,
                " (silenced)" if silenced else (" (notifying)" if self.channels else ""),
            )
        if silenced:
            return after, rows
        message = None
        if needs_firing_notification(after, repeat_interval=self.settings.repeat_interval, now=now):
            message = "alert.firing"
            after = replace(after, last_notified_at=now)
        elif needs_resolved_notification(after) and before is not None and before.state is AlertState.FIRING:
            message = "alert.resolved"
        if message is not None:
            payload = alert_payload(message, after, event, now)
            rows = notification_rows(
                payload, self.channels, alert_id=after.id, worker_id=after.worker_id, now=now
            )
        return after, rows


def unreachable_detail(event: dict[str, Any]) -> str:
    last = event.get("last_collected_at")
    when = last.strftime("%Y-%m-%d %H:%M UTC") if last is not None else "its registration"
    return f"no successful collection since {when}"
