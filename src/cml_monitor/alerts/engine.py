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
from cml_monitor.domain.collections import RegionOutcome

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


def _figure(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "n/a"


def _log_change(alert: Alert, event: dict[str, Any] | None, suffix: str) -> None:
    """`Alert cpu firing on lab-1 (i-0abc…): value 97.5, threshold 90 (notifying)`: WARNING when
    it fires, INFO when it resolves; the worker, kind and figures also as structured fields."""
    event = event or {}  # a fleet-level alert is about a region, not a worker
    name = event.get("worker_name") or alert.worker_id or f"region {alert.region}"
    instance = event.get("aws_instance_id")
    where = f"{name} ({instance})" if instance else name
    figures = ""
    if alert.value is not None or alert.threshold is not None:
        figures = f": value {_figure(alert.value)}"
        if alert.threshold is not None:
            figures += f", threshold {_figure(alert.threshold)}"
    if alert.detail and alert.state is AlertState.FIRING:
        figures += f" ({alert.detail})" if figures else f": {alert.detail}"
    fields = {
        "worker_id": alert.worker_id,
        "worker_name": event.get("worker_name"),
        "instance_id": instance,
        "region": event.get("aws_region") or event.get("region") or alert.region,
        "kind": alert.kind.value,
        "severity": alert.severity,
        "state": alert.state.value,
        "alert_id": alert.id,
        "value": alert.value,
        "threshold": alert.threshold,
    }
    if alert.state is AlertState.FIRING:
        logger.warning("Alert %s firing on %s%s%s", alert.kind.value, where, figures, suffix, extra=fields)
    else:
        logger.info("Alert %s resolved on %s%s", alert.kind.value, where, figures, extra=fields)


class AlertEngine:
    def __init__(
        self,
        store: AlertStore,
        channels: list[Channel],
        settings: AlertSettings = AlertSettings(),
        *,
        clock: Clock = utcnow,
        on_outbox: Callable[[], None] | None = None,
        on_firing: Callable[[list[tuple[str | None, str | None, str]]], None] | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.settings = settings
        self._clock = clock
        self._on_outbox = on_outbox
        self._on_firing = on_firing

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

    async def region_outcome(self, outcome: RegionOutcome) -> None:
        """`collection_failing`: a region whose collection failed twice in a row, until one works.

        Fleet-level: the alert has no worker, names the region, and says why in `detail`. Its
        state lives in the alerts table like any other, so a restart neither forgets nor repeats it.
        """
        kind = AlertKind.COLLECTION_FAILING
        now = self._clock()
        before = (await self.store.active_for_regions(kind)).get(outcome.region)
        if outcome.succeeded:
            sample = Sample(kind, Verdict.CLEAR, detail=None)
        else:
            sample = Sample(kind, Verdict.VIOLATING, detail=f"{outcome.region}: {outcome.error}"[:1024])
        after = advance(before, sample, None, for_samples=2, now=now)
        if after is None:
            if before is not None:
                await self.store.apply([], [], [before.id], [])
            return
        if before is None:
            after = replace(after, region=outcome.region)
        silences = await self.store.list_silences(active_at=now)
        after, outbox = self._notify(before, after, None, silences, now)
        for ordinal, row in enumerate(outbox):
            row["ordinal"] = ordinal
        await self.store.apply(
            [after] if before is None else [], [] if before is None else [after], [], outbox
        )
        if outbox and self._on_outbox is not None:
            self._on_outbox()
        if self._on_firing is not None and (before is None or before.state is not after.state):
            self._on_firing(await self.store.firing())

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
        if self._on_firing is not None and (inserted or updated or deleted):
            self._on_firing(await self.store.firing())

    def _notify(
        self,
        before: Alert | None,
        after: Alert,
        event: dict[str, Any] | None,
        silences: list[Silence],
        now: datetime,
    ) -> tuple[Alert, list[dict[str, Any]]]:
        silenced = is_silenced(silences, after.worker_id, after.kind.value, now)
        rows: list[dict[str, Any]] = []
        if after.state is not AlertState.PENDING and (before is None or before.state is not after.state):
            _log_change(
                after, event, " (silenced)" if silenced else (" (notifying)" if self.channels else "")
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
