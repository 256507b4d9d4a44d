"""Opsgenie Alert API: create with `alias` = alert id on firing, close by alias on resolved."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from ..links import Links
from .base import Delivery, OutgoingNotification, post_json, subject
from .slack import summary

DEFAULT_API_URL = "https://api.opsgenie.com"
PRIORITIES = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}


def opsgenie_create_body(payload: dict[str, Any], links: Links | None = None) -> dict[str, Any]:
    alert, worker = payload["alert"], subject(payload)
    found = (links or Links()).for_payload(payload)
    return {
        "message": summary(payload)[:130],
        "alias": alert["id"],
        "description": json.dumps({"alert": alert, "worker": worker, "links": found}, indent=2)[:15000],
        "entity": (worker.get("name") or "")[:512],
        "source": "cml-monitor",
        "priority": PRIORITIES.get(alert.get("severity", ""), "P3"),
        "tags": ["cml-monitor", alert["kind"], worker.get("aws_region") or "unknown-region"],
        "details": {
            "worker_id": str(worker.get("id")),
            "aws_instance_id": str(worker.get("aws_instance_id")),
            "kind": alert["kind"],
            "value": str(alert.get("value")),
            "threshold": str(alert.get("threshold")),
            **{key: value for key, value in found.items() if value},
        },
    }


class OpsgenieNotifier:
    channel = "opsgenie"

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_key: str,
        api_url: str = DEFAULT_API_URL,
        links: Links | None = None,
    ) -> None:
        self._http = http
        self._key = api_key
        self._url = api_url.rstrip("/")
        self._links = links or Links()

    async def send(self, notification: OutgoingNotification) -> Delivery:
        headers = {"Authorization": f"GenieKey {self._key}"}
        payload = notification.payload
        if payload["type"] == "alert.resolved":
            alias = quote(payload["alert"]["id"], safe="")
            body = json.dumps({"source": "cml-monitor", "note": "resolved by CML Worker Monitor"}).encode()
            return await post_json(
                self._http, f"{self._url}/v2/alerts/{alias}/close?identifierType=alias", body, headers
            )
        return await post_json(
            self._http,
            f"{self._url}/v2/alerts",
            json.dumps(opsgenie_create_body(payload, self._links)).encode(),
            headers,
        )
