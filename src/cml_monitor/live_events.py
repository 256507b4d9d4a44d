"""Live metrics events for any number of Server-Sent-Events clients.

Each client has its own bounded queue; publishing never waits, and a client too slow to keep
up loses its oldest events rather than slowing collection or other clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cml_monitor.domain import WorkerMetricsCollected

logger = logging.getLogger(__name__)


class EventHub:
    """Fan-out of metrics events to subscribers (an observer of the monitoring loop)."""

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Observer of the monitoring loop: one `metrics` event per worker to every client."""
        for event in events:
            self.publish("metrics", event.to_json())

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        message = {"event": event, "data": json.dumps(data, default=str)}
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(message)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)
