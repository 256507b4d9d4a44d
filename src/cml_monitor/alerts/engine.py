"""`AlertEngine`: metrics events in, alert state and outbox messages out (one transaction a batch).

It is the observer that checks every metrics event (the seed called it the notification
handler: `WorkerNotificationHandler` is its other name). A region's collection reaches `observe`
as one batch: the rules turn each typed event into samples, then one query for the open
alerts, one for the silences, one transaction for every change and every message, however many
workers the region has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import OutboxMessage, Silence, WorkerMetricsCollected, WorkerRef, WorkerStatus
from cml_monitor.domain.collections import RegionOutcome

from .outbox import Channel, alert_payload, in_order, outbox_messages, status_payload
from .rules import RuleSettings, samples_for
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


@dataclass(frozen=True, slots=True)
class Observation:
    """What one worker's collection (or its absence) says: a sample per alert kind, and the
    event itself when there is one (its status change is notified)."""

    worker: WorkerRef
    samples: list[Sample]
    event: WorkerMetricsCollected | None = None


def _figure(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "n/a"


def _log_change(alert: Alert, worker: WorkerRef | None, suffix: str) -> None:
    """`Alert cpu firing on lab-1 (i-0abc…): value 97.5, threshold 90 (notifying)`: WARNING when
    it fires, INFO when it resolves; the worker, kind and figures also as structured fields.
    A fleet-level alert has no worker: it names its region."""
    name = worker.name if worker is not None else alert.worker_id or f"region {alert.region}"
    instance = None if worker is None else worker.aws_instance_id
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
        "worker_name": None if worker is None else worker.name,
        "instance_id": instance,
        "region": alert.region if worker is None else worker.aws_region,
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

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """A region's events: the seed's checks and log lines, then one evaluation of them all."""
        if events:
            await self.process([self._check(event) for event in events])

    def _check(self, event: WorkerMetricsCollected) -> Observation:
        logger.debug(
            "Collected metrics for worker %s (%s): CPU=%s%%, Memory=%s%%",
            event.worker_name,
            event.aws_instance_id,
            "n/a" if event.cpu_utilization is None else f"{event.cpu_utilization:.1f}",
            "n/a" if event.memory_utilization is None else f"{event.memory_utilization:.1f}",
            extra={
                "worker_id": event.worker_id,
                "worker_name": event.worker_name,
                "instance_id": event.aws_instance_id,
                "region": event.aws_region,
            },
        )
        samples = samples_for(event, self.settings.rules)
        for sample in samples:
            if (
                sample.kind in (AlertKind.CPU, AlertKind.MEMORY)
                and sample.verdict is Verdict.VIOLATING
                and sample.value is not None
                and sample.threshold is not None
            ):
                value, threshold = float(sample.value), sample.threshold
                self._handle_threshold_violation(
                    event.worker_id, event.worker_name, sample.kind.value, value, threshold
                )
        if event.status_changed:
            logger.info(
                "🔄 Worker %s (%s) status changed: %s → %s",
                event.worker_name,
                event.worker_id,
                event.previous_status.value,
                event.status.value,
            )
        return Observation(event.worker, samples, event)

    def _handle_threshold_violation(
        self, worker_id: str, worker_name: str, metric_type: str, value: float, threshold: float
    ) -> None:
        """The seed's hook for a CPU or memory sample over its threshold (the alert itself
        follows from the alert state, `for_samples` and silences)."""
        logger.debug(
            "🚨 Threshold Violation: %s (%s) - %s at %.1f%% exceeds %s%%",
            worker_name,
            worker_id,
            metric_type.upper(),
            value,
            threshold,
        )

    async def check_unreachable(self) -> int:
        """Raise `unreachable` for workers with no successful collection for too long."""
        now = self._clock()
        stale = await self.store.stale_workers(now - self.settings.unreachable_after)
        if stale:
            await self.process(
                [
                    Observation(
                        worker,
                        [Sample(AlertKind.UNREACHABLE, Verdict.VIOLATING, detail=unreachable_detail(last))],
                    )
                    for worker, last in stale
                ]
            )
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
        outbox = in_order(outbox)
        await self.store.apply(
            [after] if before is None else [], [] if before is None else [after], [], outbox
        )
        if outbox and self._on_outbox is not None:
            self._on_outbox()
        if self._on_firing is not None and (before is None or before.state is not after.state):
            self._on_firing(await self.store.firing())

    async def process(self, batch: Sequence[Observation]) -> None:
        """One transaction for the batch's alert changes and messages.

        Messages are queued in the order things happened for each worker: its status change
        first, then the alerts that change caused (`ordinal` keeps that order in the outbox).
        """
        now = self._clock()
        active = await self.store.active_for_workers([seen.worker.id for seen in batch])
        silences = await self.store.list_silences(active_at=now)
        inserted: dict[str, Alert] = {}
        updated: dict[str, Alert] = {}
        deleted: list[str] = []
        outbox: list[OutboxMessage] = []
        for seen in batch:
            worker_id, event = seen.worker.id, seen.event
            if event is not None and _notified_change(event):
                outbox += outbox_messages(
                    status_payload(event, now), self.channels, alert_id=None, worker_id=worker_id, now=now
                )
            for sample in seen.samples:
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
                after, messages = self._notify(before, after, seen.worker, silences, now)
                outbox += messages
                active[key] = after
                if before is None:
                    inserted[after.id] = after
                elif after != before:
                    (inserted if after.id in inserted else updated)[after.id] = after
        outbox = in_order(outbox)
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
        worker: WorkerRef | None,
        silences: list[Silence],
        now: datetime,
    ) -> tuple[Alert, list[OutboxMessage]]:
        silenced = is_silenced(silences, after.worker_id, after.kind.value, now)
        rows: list[OutboxMessage] = []
        if after.state is not AlertState.PENDING and (before is None or before.state is not after.state):
            _log_change(
                after, worker, " (silenced)" if silenced else (" (notifying)" if self.channels else "")
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
            payload = alert_payload(message, after, worker, now)
            rows = outbox_messages(
                payload, self.channels, alert_id=after.id, worker_id=after.worker_id, now=now
            )
        return after, rows


def _notified_change(event: WorkerMetricsCollected) -> bool:
    """A status change, unless from `unknown` (a worker's first collection)."""
    return event.status_changed and event.previous_status is not WorkerStatus.UNKNOWN


# The seed's name for the observer that checks every metrics event; it is the alert engine.
WorkerNotificationHandler = AlertEngine


def unreachable_detail(last_collected_at: datetime | None) -> str:
    """Why a worker is `unreachable`: since when nothing was collected (None: never collected)."""
    when = (
        "its registration" if last_collected_at is None else last_collected_at.strftime("%Y-%m-%d %H:%M UTC")
    )
    return f"no successful collection since {when}"
