"""Alertmanager API v2: firing and resolved alerts posted to `<url>/api/v2/alerts`.

Alertmanager identifies an alert by its label set, so every post of one alert carries the same
labels (`alertname` = `cml_monitor_<kind>`, `kind`, `severity`, `worker`, `worker_id`,
`instance_id`, `region`) and the post is idempotent: retries and the periodic re-posts do not
make duplicates. A firing alert is sent with `endsAt` a few re-post intervals ahead, as
Prometheus does, so it stays active while we keep re-posting it whatever the receiving
Alertmanager's `resolve_timeout`, and expires by itself if the monitor goes away for good. A
resolved alert is sent with `endsAt` = when it resolved.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain.times import to_iso

from ..links import Links
from .base import Delivery, OutgoingNotification, post_json
from .slack import summary

API_PATH = "/api/v2/alerts"


def alertmanager_alert(
    payload: dict[str, Any], links: Links, *, now: datetime, valid_for: timedelta
) -> dict[str, Any]:
    """One alert in Alertmanager's `postableAlert` shape, from our webhook payload."""
    alert = payload["alert"]
    worker = payload.get("worker") or {}
    region = worker.get("aws_region") or alert.get("region") or ""
    labels = {
        "alertname": f"cml_monitor_{alert['kind']}",
        "kind": alert["kind"],
        "severity": alert.get("severity") or "warning",
        "worker": worker.get("name") or "",
        "worker_id": worker.get("id") or "",
        "instance_id": worker.get("aws_instance_id") or "",
        "region": region,
    }
    description = alert.get("detail") or summary(payload)
    body: dict[str, Any] = {
        "labels": {k: str(v) for k, v in labels.items() if v},
        "annotations": {
            "summary": summary(payload),
            "description": description,
            "runbook_url": links.runbook_url(alert["kind"]),
        },
        "startsAt": alert.get("fired_at") or alert.get("started_at") or to_iso(now),
    }
    if payload["type"] == "alert.resolved":
        body["endsAt"] = alert.get("resolved_at") or to_iso(now)
    else:
        body["endsAt"] = to_iso(now + valid_for)
    generator = links.for_payload(payload).get("dashboard")
    if generator:
        body["generatorURL"] = generator
    return body


class AlertmanagerNotifier:
    channel = "alertmanager"

    def __init__(
        self,
        http: httpx.AsyncClient,
        links: Links,
        *,
        refresh: float = 60.0,
        clock: Clock = utcnow,
    ) -> None:
        self._http = http
        self._links = links
        self.refresh = refresh
        self._valid_for = timedelta(seconds=4 * refresh)  # Prometheus's margin: 4 missed re-posts
        self._clock = clock

    def body(self, payloads: list[dict[str, Any]]) -> bytes:
        now = self._clock()
        return json.dumps(
            [alertmanager_alert(p, self._links, now=now, valid_for=self._valid_for) for p in payloads]
        ).encode()

    async def post(self, base_url: str, payloads: list[dict[str, Any]]) -> Delivery:
        return await post_json(self._http, base_url.rstrip("/") + API_PATH, self.body(payloads), {})

    async def send(self, notification: OutgoingNotification) -> Delivery:
        return await self.post(notification.target, [notification.payload])
