"""PagerDuty Events API v2: `trigger` on firing, `resolve` on resolved, `dedup_key` = alert id,
so PagerDuty keeps one incident per alert however often we retry."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..links import Links
from .base import Delivery, OutgoingNotification, post_json, subject
from .slack import summary

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = {"critical", "error", "warning", "info"}


def pagerduty_body(payload: dict[str, Any], routing_key: str, links: Links | None = None) -> dict[str, Any]:
    alert, worker = payload["alert"], subject(payload)
    found = (links or Links()).for_payload(payload)
    if payload["type"] == "alert.resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert["id"]}
    severity = alert.get("severity") if alert.get("severity") in SEVERITIES else "error"
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert["id"],
        "payload": {
            "summary": summary(payload)[:1024],
            "source": worker.get("aws_instance_id") or worker.get("id"),
            "severity": severity,
            "timestamp": alert.get("fired_at") or payload.get("timestamp"),
            "component": worker.get("name"),
            "group": worker.get("aws_region"),
            "class": alert["kind"],
            "custom_details": {"alert": alert, "worker": worker, "links": found},
        },
        "links": [
            {"href": href, "text": text}
            for href, text in ((found.get("dashboard"), "Worker page"), (found.get("runbook"), "Runbook"))
            if href and href.startswith(("http://", "https://"))
        ],
    }


class PagerDutyNotifier:
    channel = "pagerduty"

    def __init__(
        self,
        http: httpx.AsyncClient,
        routing_key: str,
        events_url: str = DEFAULT_EVENTS_URL,
        links: Links | None = None,
    ) -> None:
        self._http = http
        self._key = routing_key
        self._url = events_url
        self._links = links or Links()

    async def send(self, notification: OutgoingNotification) -> Delivery:
        body = json.dumps(pagerduty_body(notification.payload, self._key, self._links)).encode()
        return await post_json(self._http, self._url, body, {})
