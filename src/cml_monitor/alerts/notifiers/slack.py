"""Slack incoming webhook: a `text` fallback plus Block Kit blocks (each section under Slack's
3,000-character limit, at most 50 blocks).

Alerts that fire together arrive as one message listing them (`send_group`): six workers stopped
at once make one post, not six.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..links import Links
from .base import Delivery, OutgoingNotification, post_json, subject

SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
ICONS = {"alert.firing": "🚨", "alert.resolved": "✅"}


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(payload: dict[str, Any]) -> str:
    alert, worker = payload["alert"], subject(payload)
    state = "FIRING" if payload["type"] == "alert.firing" else "RESOLVED"
    detail = ""
    if alert.get("value") is not None and alert.get("threshold") is not None:
        unit = " days" if alert["kind"] == "license" else "%"
        detail = f": {alert['value']:.1f}{unit} (threshold {alert['threshold']:.0f}{unit})"
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
    alert, worker = payload["alert"], subject(payload)
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


def slack_group_body(payloads: list[dict[str, Any]], links: Links | None = None) -> dict[str, Any]:
    """One message for several alerts, in the order given: a count, then a line for each."""
    links = links or Links()
    firing = sum(1 for p in payloads if p["type"] == "alert.firing")
    resolved = len(payloads) - firing
    counts = ", ".join(
        part
        for part in (f"{firing} firing" if firing else "", f"{resolved} resolved" if resolved else "")
        if part
    )
    headline = (
        f"{ICONS['alert.firing'] if firing else ICONS['alert.resolved']} {len(payloads)} alerts ({counts})"
    )
    lines = []
    for payload in payloads:
        line = f"{ICONS.get(payload['type'], '')} {summary(payload)}".strip()
        extra = link_line(payload, links)
        lines.append(f"{line} · {extra}" if extra else line)
    sections: list[str] = []
    for line in lines:  # as few sections as fit, each under Slack's limits
        if sections and len(sections[-1]) + 1 + len(line) <= SECTION_LIMIT:
            sections[-1] += "\n" + line
        else:
            sections.append(_clip(line))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": _clip(headline)}}]
    for text in sections[: BLOCK_LIMIT - 2]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if len(sections) > BLOCK_LIMIT - 2:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "more in the dashboard's alerts page"}],
            }
        )
    return {"text": _clip(headline + "\n" + "\n".join(lines)), "blocks": blocks}


class SlackNotifier:
    channel = "slack"

    def __init__(self, http: httpx.AsyncClient, webhook_url: str, links: Links | None = None) -> None:
        self._http = http
        self._url = webhook_url
        self._links = links or Links()

    async def send(self, notification: OutgoingNotification) -> Delivery:
        body = json.dumps(slack_body(notification.payload, self._links)).encode()
        return await post_json(self._http, self._url, body, {})

    async def send_group(self, notifications: list[OutgoingNotification]) -> Delivery:
        if len(notifications) == 1:
            return await self.send(notifications[0])
        body = slack_group_body([n.payload for n in notifications], self._links)
        return await post_json(self._http, self._url, json.dumps(body).encode(), {})
