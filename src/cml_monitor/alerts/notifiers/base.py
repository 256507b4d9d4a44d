"""One protocol for every receiver: send a stored notification, say whether a failure is worth
retrying (Alertmanager's `(retry bool, err error)`). The dispatcher, not the notifier, owns
retries, backoff and dead-lettering."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

import httpx

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    error: str | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True)
class OutgoingNotification:
    id: str
    channel: str
    target: str
    event_type: str
    payload: dict[str, Any]
    attempts: int


class Notifier(Protocol):
    channel: str

    async def send(self, notification: OutgoingNotification) -> Delivery: ...


@runtime_checkable
class GroupNotifier(Protocol):
    """A receiver that takes several notifications as one message (chat: one post, not twelve)."""

    channel: str

    async def send(self, notification: OutgoingNotification) -> Delivery: ...

    async def send_group(self, notifications: list[OutgoingNotification]) -> Delivery: ...


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


async def post_json(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], accepted: tuple[int, ...] = ()
) -> Delivery:
    """POST and classify the answer: 2xx delivered; 408/429/5xx and network errors retryable."""
    try:
        response = await http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.HTTPError as exc:
        return Delivery(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300 or response.status_code in accepted:
        return Delivery(ok=True, status=response.status_code)
    return Delivery(
        ok=False,
        retryable=response.status_code in RETRYABLE_STATUS,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
        error=f"HTTP {response.status_code}: {response.text[:200]}",
        status=response.status_code,
    )


def subject(payload: dict[str, Any]) -> dict[str, Any]:
    """Who an alert is about, as chat and incident tools name it.

    The worker, or — for a fleet-level alert such as `collection_failing`, whose `worker` is
    null in the payload — the region it is about.
    """
    worker = payload.get("worker")
    if worker is not None:
        return dict(worker)
    region = (payload.get("alert") or {}).get("region")
    return {"id": None, "name": f"region {region}", "aws_instance_id": None, "aws_region": region}
