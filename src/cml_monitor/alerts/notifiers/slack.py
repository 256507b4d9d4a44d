"""Slack incoming webhook: a `text` fallback plus Block Kit blocks (each section under Slack's
3,000-character limit)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..links import Links
from .base import Delivery, OutgoingNotification, post_json

SECTION_LIMIT = 3000
ICONS = {"alert.firing": "🚨", "alert.resolved": "✅"}


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(payload: dict[str, Any]) -> str:
    alert, worker = payload["alert"], payload.get("worker") or {}
    state = "FIRING" if payload["type"] == "alert.firing" else "RESOLVED"
    detail = ""
    if alert.get("value") is not None and alert.get("threshold") is not None:
        detail = f": {alert['value']:.1f}% (threshold {alert['threshold']:.0f}%)"
    where = worker.get("name") or worker.get("id") or alert.get("region") or "the fleet"
    return f"[{state}] {alert['kind']} on {where}{detail}"


def link_line(payload: dict[str, Any], links: Links) -> str:
    """`<dashboard|Worker page> · <runbook|Runbook>` in Slack's link syntax (empty if none)."""
    found = links.for_payload(payload)
    parts = []
    if found.get("dashboard"):
        parts.append(f"<{found['dashboard']}|Worker page>")
    if found.get("runbook"):
        parts.append(f"<{found['runbook']}|Runbook>")
    return " · ".join(parts)


def slack_body(payload: dict[str, Any], links: Links | None = None) -> dict[str, Any]:
    alert, worker = payload["alert"], payload.get("worker") or {}
    text = f"{ICONS.get(payload['type'], '')} {summary(payload)}".strip()
    fields = [
        f"*Worker*\n{worker.get('name')}",
        f"*Instance*\n{worker.get('aws_instance_id')} ({worker.get('aws_region')})",
        f"*Severity*\n{alert.get('severity')}",
        f"*Since*\n{alert.get('fired_at') or alert.get('started_at')}",
    ]
    context = " · ".join(filter(None, [f"alert {alert['id']}", link_line(payload, links or Links())]))
    return {
        "text": _clip(text),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f, 2000)} for f in fields]},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _clip(context, 2000)}],
            },
        ],
    }


class SlackNotifier:
    channel = "slack"

    def __init__(self, http: httpx.AsyncClient, webhook_url: str, links: Links | None = None) -> None:
        self._http = http
        self._url = webhook_url
        self._links = links or Links()

    async def send(self, notification: OutgoingNotification) -> Delivery:
        body = json.dumps(slack_body(notification.payload, self._links)).encode()
        return await post_json(self._http, self._url, body, {})
