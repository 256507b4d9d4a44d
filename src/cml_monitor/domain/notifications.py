"""`OutboxMessage`: one notification waiting in the outbox for one receiving channel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A new message; storage writes it pending, never tried, due at `next_attempt_at` (at once
    when None: a receiver that groups messages, like Slack, waits a moment for others).

    `payload` is the JSON receivers get, built once when the message is queued, so a delivery
    after a restart sends exactly what would have been sent before it. `ordinal` keeps the
    order of messages queued in the same transaction (a status change before the alert it caused).
    """

    id: str
    alert_id: str | None
    worker_id: str | None
    event_type: str
    channel: str
    target: str
    payload: str
    created_at: datetime
    ordinal: int = 0
    next_attempt_at: datetime | None = None
