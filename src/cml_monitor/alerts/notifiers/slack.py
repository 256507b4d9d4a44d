"""Slack incoming webhook: a `text` fallback plus Block Kit blocks (each section under Slack's
3,000-character limit)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from .base import Delivery, OutgoingNotification, post_json, subject

SECTION_LIMIT = 3000
ICONS = {"alert.firing": "🚨", "alert.resolved": "✅"}


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(payload: dict[str, Any]) -> str:
    alert, worker = payload["alert"], subject(payload)
    state = "FIRING" if payload["type"] == "alert.firing" else "RESOLVED"
    detail = ""
    if alert.get("value") is not None and alert.get("threshold") is not None:
        detail = f": {alert['value']:.1f}% (threshold {alert['threshold']:.0f}%)"
    return f"[{state}] {alert['kind']} on {worker.get('name') or worker.get('id')}{detail}"


def slack_body(payload: dict[str, Any]) -> dict[str, Any]:
    alert, worker = payload["alert"], subject(payload)
    text = f"{ICONS.get(payload['type'], '')} {summary(payload)}".strip()
    fields = [
        f"*Worker*\n{worker.get('name')}",
        f"*Instance*\n{worker.get('aws_instance_id')} ({worker.get('aws_region')})",
        f"*Severity*\n{alert.get('severity')}",
        f"*Since*\n{alert.get('fired_at') or alert.get('started_at')}",
    ]
    return {
        "text": _clip(text),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f, 2000)} for f in fields]},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _clip(f"alert {alert['id']}", 2000)}],
            },
        ],
    }


class SlackNotifier:
    channel = "slack"

    def __init__(self, http: httpx.AsyncClient, webhook_url: str) -> None:
        self._http = http
        self._url = webhook_url

    async def send(self, notification: OutgoingNotification) -> Delivery:
        body = json.dumps(slack_body(notification.payload)).encode()
        return await post_json(self._http, self._url, body, {})
