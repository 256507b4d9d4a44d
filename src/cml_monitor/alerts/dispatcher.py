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
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cml_monitor.clock import Clock, utcnow

from .notifiers import Delivery, Notifier, OutgoingNotification
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
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def dispatch_due(self) -> int:
        now = self._clock()
        rows = await self._store.claim_due(now, now + timedelta(seconds=self._lease))
        if rows:
            await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    def _retry_delay(self, result: Delivery, attempts: int) -> float:
        """The receiver's `Retry-After` within [1 s, retry_max], else backoff with equal jitter."""
        if result.retry_after is not None:
            return min(max(result.retry_after, 1.0), self._retry_max)
        ceiling = min(self._retry_max, self._retry_base * 2 ** min(attempts - 1, 60))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    async def _deliver(self, row: dict[str, Any]) -> None:
        notifier = self._notifiers.get(row["channel"])
        attempts = row["attempts"] + 1
        if notifier is None:
            result = Delivery(
                ok=False, retryable=False, error=f"channel {row['channel']!r} is no longer configured"
            )
        else:
            outgoing = OutgoingNotification(
                id=row["id"],
                channel=row["channel"],
                target=row["target"],
                event_type=row["event_type"],
                payload=json.loads(row["payload"]),
                attempts=attempts,
            )
            async with self._limit:
                try:
                    result = await notifier.send(outgoing)
                except Exception as exc:
                    result = Delivery(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
        now = self._clock()
        if result.ok:
            await self._store.finish(row["id"], state="sent", attempts=attempts, sent_at=now, last_error=None)
            self._count(row["channel"], "sent")
            logger.info("📨 Sent %s to %s (%s)", row["event_type"], row["channel"], row["id"])
            return
        too_old = now - row["created_at"] >= self._max_age
        if result.retryable and not too_old:
            delay = self._retry_delay(result, attempts)
            await self._store.finish(
                row["id"],
                attempts=attempts,
                next_attempt_at=now + timedelta(seconds=delay),
                last_error=result.error,
            )
            self._count(row["channel"], "retry")
            logger.warning(
                "Delivery of %s to %s failed (%s); attempt %d, retrying in %.1f s",
                row["event_type"],
                row["channel"],
                result.error,
                attempts,
                delay,
            )
            return
        await self._store.finish(row["id"], state="failed", attempts=attempts, last_error=result.error)
        self._count(row["channel"], "failed")
        logger.error(
            "❌ Gave up delivering %s to %s after %d attempts%s: %s",
            row["event_type"],
            row["channel"],
            attempts,
            " (older than the maximum age)" if result.retryable else "",
            result.error,
        )

    def _count(self, channel: str, outcome: str) -> None:
        if self._on_result is not None:
            self._on_result(channel, outcome)
