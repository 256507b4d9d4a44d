"""`NotificationDispatcher`: delivers the outbox, retrying with backoff, never dropping a message.

It claims the head of each (receiver, worker) queue with a lease, sends it through its
channel's notifier, and records the outcome: sent; retried later (exponential backoff with
jitter, or the receiver's `Retry-After` clamped to [1 s, `retry_max`]); or dead-lettered as
`failed` (visible in `GET /api/notifications?state=failed`) when the receiver said the message
is wrong (a 400) or the message is older than `max_age`. Retrying by age rather than by count
means an outage of minutes or hours loses nothing, whatever the backoff did meanwhile.

The lease is a little longer than one delivery may take, so a row whose dispatcher died
mid-send is sent again soon after (with the same delivery id, for receivers that drop
duplicates), not a minute later.

A notifier with `send_group` (Slack) takes several rows in one message: when one of its rows
is due, every other row queued for the same receiver joins it, in the order they were queued
(so each worker's messages keep their order), and the group is one unit: sent, retried or
dead-lettered together. Its rows wait `group_wait` before their first attempt (set when they
are queued) so that alerts firing together meet in one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cml_monitor.clock import Clock, utcnow

from .notifiers import Delivery, GroupNotifier, Notifier, OutgoingNotification
from .store import OutboxStore

logger = logging.getLogger(__name__)


class NotificationDispatcher:
    def __init__(
        self,
        store: OutboxStore,
        notifiers: dict[str, Notifier],
        *,
        max_age: float = 86_400.0,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
        delivery_timeout: float = 10.0,
        concurrency: int = 10,
        idle_poll: float = 5.0,
        clock: Clock = utcnow,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._notifiers = notifiers
        self._max_age = timedelta(seconds=max_age)
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._lease = delivery_timeout + 5.0
        self._limit = asyncio.Semaphore(concurrency)
        self._idle_poll = idle_poll
        self._clock = clock
        self._on_result = on_result
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="notification-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.dispatch_due()
                if sent:
                    continue
                delay = self._idle_poll
                next_due = await self._store.next_due_at()
                if next_due is not None:
                    delay = min(delay, max(0.01, (next_due - self._clock()).total_seconds()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: keep trying
                logger.error("Notification dispatch failed: %s", exc)
                delay = self._idle_poll
            self._wake.clear()
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` swallows a cancel that
            # lands as the wake-up completes, and this loop would outlive its stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def dispatch_due(self) -> int:
        now = self._clock()
        lease_until = now + timedelta(seconds=self._lease)
        rows = await self._store.claim_due(now, lease_until)
        units = await self._units(rows, now, lease_until)
        if units:
            await asyncio.gather(*(self._deliver(unit) for unit in units))
        return sum(len(unit) for unit in units)

    async def _units(
        self, rows: list[dict[str, Any]], now: datetime, lease_until: datetime
    ) -> list[list[dict[str, Any]]]:
        """One unit per row, except for grouping receivers: one per receiver with all its queue."""
        units: list[list[dict[str, Any]]] = []
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            if isinstance(self._notifiers.get(row["channel"]), GroupNotifier):
                groups.setdefault((row["channel"], row["target"]), []).append(row)
            else:
                units.append([row])
        for (channel, target), members in groups.items():
            members += await self._store.claim_queued(
                channel, target, now, lease_until, exclude=[r["id"] for r in members]
            )
            members.sort(key=lambda r: (r["created_at"], r["ordinal"]))
            units.append(members)
        return units

    def _retry_delay(self, result: Delivery, attempts: int) -> float:
        """The receiver's `Retry-After` within [1 s, retry_max], else backoff with equal jitter."""
        if result.retry_after is not None:
            return min(max(result.retry_after, 1.0), self._retry_max)
        ceiling = min(self._retry_max, self._retry_base * 2 ** min(attempts - 1, 60))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    async def _send(self, unit: list[dict[str, Any]], attempts: int) -> Delivery:
        row = unit[0]
        notifier = self._notifiers.get(row["channel"])
        if notifier is None:
            return Delivery(
                ok=False, retryable=False, error=f"channel {row['channel']!r} is no longer configured"
            )
        outgoing = [
            OutgoingNotification(
                id=r["id"],
                channel=r["channel"],
                target=r["target"],
                event_type=r["event_type"],
                payload=json.loads(r["payload"]),
                attempts=attempts,
            )
            for r in unit
        ]
        async with self._limit:
            try:
                if len(outgoing) > 1 and isinstance(notifier, GroupNotifier):
                    return await notifier.send_group(outgoing)
                return await notifier.send(outgoing[0])
            except Exception as exc:
                return Delivery(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")

    async def _deliver(self, unit: list[dict[str, Any]]) -> None:
        """Send one row, or one group of rows as one message, and record the outcome for each."""
        row = unit[0]
        attempts = max(r["attempts"] for r in unit) + 1
        result = await self._send(unit, attempts)
        now = self._clock()
        what = row["event_type"] if len(unit) == 1 else f"{len(unit)} messages in one"
        ids = ", ".join(r["id"] for r in unit)
        if result.ok:
            for r in unit:
                await self._store.finish(
                    r["id"], state="sent", attempts=attempts, sent_at=now, last_error=None
                )
                self._count(r["channel"], "sent")
            logger.info("Sent %s to %s (%s)", what, row["channel"], ids)
            return
        too_old = now - min(r["created_at"] for r in unit) >= self._max_age
        if result.retryable and not too_old:
            delay = self._retry_delay(result, attempts)
            for r in unit:
                await self._store.finish(
                    r["id"],
                    attempts=attempts,
                    next_attempt_at=now + timedelta(seconds=delay),
                    last_error=result.error,
                )
                self._count(r["channel"], "retry")
            logger.warning(
                "Delivery of %s to %s failed (%s); attempt %d, retrying in %.1f s",
                what,
                row["channel"],
                result.error,
                attempts,
                delay,
            )
            return
        for r in unit:
            await self._store.finish(r["id"], state="failed", attempts=attempts, last_error=result.error)
            self._count(r["channel"], "failed")
        logger.error(
            "Gave up delivering %s to %s after %d attempts%s: %s",
            what,
            row["channel"],
            attempts,
            " (older than the maximum age)" if result.retryable else "",
            result.error,
        )

    def _count(self, channel: str, outcome: str) -> None:
        if self._on_result is not None:
            self._on_result(channel, outcome)
