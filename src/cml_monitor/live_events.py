"""Live metrics events for any number of Server-Sent-Events clients.

Each client has its own bounded queue, large enough for a whole cycle of a large fleet;
publishing never waits on a client. A client that still falls that far behind is not left
silently missing workers: its backlog is replaced by one `resync` event, on which the dashboard
reloads the fleet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sse_starlette import ServerSentEvent

from cml_monitor.domain import WorkerMetricsCollected

logger = logging.getLogger(__name__)


def frame(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event, encoded once and shared by every client."""
    return ServerSentEvent(data=json.dumps(data, default=str), event=event).encode()


class EventHub:
    """Fan-out of metrics events to subscribers (an observer of the monitoring loop)."""

    def __init__(self, queue_size: int = 20_000, work_per_slice: int = 2000, max_chunk: int = 1000) -> None:
        self._queue_size = queue_size
        self._work_per_slice = work_per_slice
        self._max_chunk = max_chunk
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        self.dropped = 0

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Observer of the monitoring loop: one `metrics` event per worker to every client.

        It yields to the loop after every slice of about `work_per_slice` queue writes (events
        times clients), so thousands of workers and hundreds of clients never hold up an API
        request for more than a few milliseconds while they fan out.
        """
        every = max(1, min(200, self._work_per_slice // max(1, len(self._subscribers))))
        for index, event in enumerate(events, start=1):
            self.publish("metrics", event.to_json())
            if index % every == 0:
                await asyncio.sleep(0)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        message = frame(event, data)
        for queue in list(self._subscribers):
            if queue.full():
                self._resync(queue)
            queue.put_nowait(message)

    def _resync(self, queue: asyncio.Queue[bytes]) -> None:
        """A client too slow for a whole fleet's cycle: drop its backlog, tell it to reload."""
        lost = queue.qsize()
        while not queue.empty():
            queue.get_nowait()
        self.dropped += lost
        queue.put_nowait(frame("resync", {"dropped": lost}))
        logger.warning("An event stream client fell %d events behind; told it to reload", lost)

    async def subscribe(self) -> AsyncIterator[bytes]:
        """Encoded events as they come; what queued up meanwhile goes out as one chunk.

        One write per wake-up rather than one per event: 200 clients × 500 workers is 100,000
        events a cycle, and a write each would keep the loop busy long after the cycle.
        """
        queue: asyncio.Queue[bytes] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            while True:
                chunk = [await queue.get()]
                while not queue.empty() and len(chunk) < self._max_chunk:
                    chunk.append(queue.get_nowait())
                yield b"".join(chunk)
        finally:
            self._subscribers.discard(queue)
