"""Generic webhook: the alert JSON as it is, signed (HMAC-SHA256) when a secret is set.

`X-CML-Monitor-Delivery` is the outbox row's id and stays the same on every retry, so a
receiver can drop duplicates; `X-CML-Monitor-Signature: sha256=<hex>` is the HMAC-SHA256 of the
exact body bytes with `WORKER_NOTIFICATION_WEBHOOK_SECRET`.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from ..links import Links
from .base import Delivery, OutgoingNotification, post_json


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    channel = "webhook"

    def __init__(
        self, http: httpx.AsyncClient, secret: str | None = None, links: Links | None = None
    ) -> None:
        self._http = http
        self._secret = secret
        self._links = links or Links()

    async def send(self, notification: OutgoingNotification) -> Delivery:
        body = json.dumps(self._links.decorate(notification.payload), separators=(",", ":")).encode()
        headers = {
            "X-CML-Monitor-Delivery": notification.id,
            "X-CML-Monitor-Event": notification.event_type,
            "User-Agent": "cml-monitor",
        }
        if self._secret:
            headers["X-CML-Monitor-Signature"] = sign(self._secret, body)
        return await post_json(self._http, notification.target, body, headers)
