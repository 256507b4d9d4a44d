"""What goes into the outbox: the webhook JSON receivers rely on, one row per receiving channel.

The payload is built once, when the alert changes, and stored with the row: a delivery after a
restart sends exactly what would have been sent before it. Channel formats (Slack blocks,
PagerDuty and Opsgenie events) are derived from it at send time by the notifiers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cml_monitor.clock import isoformat

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
        "started_at": isoformat(alert.started_at),
        "fired_at": isoformat(alert.fired_at),
        "resolved_at": isoformat(alert.resolved_at),
    }


def worker_json(worker: dict[str, Any] | None) -> dict[str, Any] | None:
    """The worker as notifications name it; None for a fleet-level alert (a region's)."""
    if worker is None:
        return None
    return {
        "id": worker.get("worker_id") or worker.get("id"),
        "name": worker.get("worker_name") or worker.get("name"),
        "aws_instance_id": worker.get("aws_instance_id"),
        "aws_region": worker.get("aws_region"),
    }


def alert_payload(
    event_type: str, alert: Alert, worker: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    return {
        "type": event_type,
        "alert": alert_json(alert),
        "worker": worker_json(worker),
        "timestamp": isoformat(now),
    }


def action_payload(action: dict[str, Any], worker: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`worker.action`: an automatic stop or reboot was taken (or dry-run)."""
    return {
        "type": "worker.action",
        "action": action,
        "worker": worker_json(worker),
        "timestamp": isoformat(now),
    }


def status_payload(event: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "type": "worker.status_changed",
        "status": event.get("status"),
        "previous_status": event.get("previous_status"),
        "worker": worker_json(event),
        "timestamp": isoformat(now),
    }


def notification_rows(
    payload: dict[str, Any],
    channels: list[Channel],
    *,
    alert_id: str | None,
    worker_id: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """One pending outbox row per channel that takes this kind of message."""
    is_alert = payload["type"].startswith("alert.")
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return [
        {
            "id": str(uuid.uuid4()),
            "alert_id": alert_id,
            "worker_id": worker_id,
            "event_type": payload["type"],
            "channel": channel.name,
            "target": channel.target,
            "payload": body,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now + timedelta(seconds=channel.group_wait),
            "lease_until": None,
            "last_error": None,
            "created_at": now,
            "sent_at": None,
            "ordinal": 0,
        }
        for channel in channels
        if is_alert or not channel.alerts_only
    ]
