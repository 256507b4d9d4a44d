"""What goes into the outbox: the webhook JSON receivers rely on, one row per receiving channel.

The payload is built once, when the alert changes, and stored with the row: a delivery after a
restart sends exactly what would have been sent before it. Channel formats (Slack blocks,
PagerDuty and Opsgenie events) are derived from it at send time by the notifiers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cml_monitor.domain import OutboxMessage, WorkerMetricsCollected, WorkerRef
from cml_monitor.domain.times import to_iso

from .state import Alert


@dataclass(frozen=True, slots=True)
class Channel:
    """A configured receiver: `webhook` (with its URL), `slack`, `pagerduty` or `opsgenie`."""

    name: str
    target: str = ""
    alerts_only: bool = False  # PagerDuty, Opsgenie and Slack get alerts, not status changes
    group_wait: float = 0.0  # seconds a message waits for others to share one (Slack)


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind.value,
        "state": alert.state.value,
        "severity": alert.severity,
        "value": alert.value,
        "threshold": alert.threshold,
        "detail": alert.detail,
        "region": alert.region,
        "started_at": to_iso(alert.started_at),
        "fired_at": to_iso(alert.fired_at),
        "resolved_at": to_iso(alert.resolved_at),
    }


def worker_ref_json(worker: WorkerRef | None) -> dict[str, Any] | None:
    """The worker as notifications name it; None for a fleet-level alert (a region's)."""
    if worker is None:
        return None
    return {
        "id": worker.id,
        "name": worker.name,
        "aws_instance_id": worker.aws_instance_id,
        "aws_region": worker.aws_region,
    }


def alert_payload(event_type: str, alert: Alert, worker: WorkerRef | None, now: datetime) -> dict[str, Any]:
    return {
        "type": event_type,
        "alert": alert_json(alert),
        "worker": worker_ref_json(worker),
        "timestamp": to_iso(now),
    }


def action_payload(action: dict[str, Any], worker: WorkerRef, now: datetime) -> dict[str, Any]:
    """`worker.action`: an automatic stop or reboot was taken (or dry-run)."""
    return {
        "type": "worker.action",
        "action": action,
        "worker": worker_ref_json(worker),
        "timestamp": to_iso(now),
    }


def status_payload(event: WorkerMetricsCollected, now: datetime) -> dict[str, Any]:
    return {
        "type": "worker.status_changed",
        "status": event.status.value,
        "previous_status": event.previous_status.value,
        "worker": worker_ref_json(event.worker),
        "timestamp": to_iso(now),
    }


def outbox_messages(
    payload: dict[str, Any],
    channels: Sequence[Channel],
    *,
    alert_id: str | None,
    worker_id: str | None,
    now: datetime,
) -> list[OutboxMessage]:
    """One message per channel that takes this kind of message."""
    is_alert = payload["type"].startswith("alert.")
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return [
        OutboxMessage(
            id=str(uuid.uuid4()),
            alert_id=alert_id,
            worker_id=worker_id,
            event_type=payload["type"],
            channel=channel.name,
            target=channel.target,
            payload=body,
            created_at=now,
            next_attempt_at=now + timedelta(seconds=channel.group_wait) if channel.group_wait else None,
        )
        for channel in channels
        if is_alert or not channel.alerts_only
    ]


def in_order(messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
    """The messages numbered in the order they were queued (one transaction's `ordinal`)."""
    return [replace(message, ordinal=n) for n, message in enumerate(messages)]
