"""Live metrics events for any number of Server-Sent-Events clients.

Each client has its own bounded queue of encoded batches (a region's events each), so it holds
whole cycles of any fleet; publishing never waits on a client. A client that still falls that
far behind is not left silently missing workers: its backlog is replaced by one `resync` event,
on which the dashboard reloads the fleet.
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

    def __init__(self, queue_size: int = 1000, max_chunk: int = 1000) -> None:
        self._queue_size = queue_size  # batches (a region's events each), not single events
        self._max_chunk = max_chunk
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        self.dropped = 0

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Observer of the monitoring loop: a region's events, encoded once, to every client.

        The batch is encoded once and queued once per client: 500 workers and 200 clients cost
        200 queue writes, not 100,000, so the loop stays free for API requests.
        """
        if not events or not self._subscribers:
            return
        frames = []
        for index, event in enumerate(events, start=1):
            frames.append(frame("metrics", event.to_json()))
            if index % 200 == 0:
                await asyncio.sleep(0)  # a region of thousands is encoded in slices
        self._put(b"".join(frames))

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        self._put(frame(event, data))

    def _put(self, chunk: bytes) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                self._resync(queue)
            queue.put_nowait(chunk)

    def _resync(self, queue: asyncio.Queue[bytes]) -> None:
        """A client too slow for whole cycles of the fleet: drop its backlog, tell it to reload."""
        lost = 0
        while not queue.empty():
            lost += queue.get_nowait().count(b"\r\n\r\n")
        self.dropped += lost
        queue.put_nowait(frame("resync", {"dropped": lost}))
        logger.warning("An event stream client fell %d events behind; told it to reload", lost)

    async def subscribe(self) -> AsyncIterator[bytes]:
        """Encoded events as they come; what queued up meanwhile goes out as one write."""
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
