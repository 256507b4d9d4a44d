"""Live metrics events for any number of Server-Sent-Events clients.

Each client has its own bounded backlog of encoded batches (a region's events each, shared by
every client), so it holds whole cycles of any fleet; publishing never waits on a client. A
client that falls behind by more batches than the backlog holds is not left silently missing
workers: its backlog is replaced by one `resync` event, on which the dashboard reloads the fleet.

A client that stops taking data altogether (a laptop asleep, a proxy that buffers, a script
that never reads) would otherwise keep its whole backlog, and memory, for as long as its socket
stays open. So a client whose untaken backlog passes `max_backlog_bytes`, or that has had data
waiting for `stall_seconds` without taking any, is dropped: its backlog is released at once and
its stream ends (the server aborts the connection itself once its socket has taken nothing for
as long, see `api.stalled_clients`). Every stream opens with a `resync` event, so a client that
reconnects reloads what it missed while it was away.

A `metrics` event carries, besides the fields it always had, `worker`: the worker exactly as
`GET /api/workers/{id}` answers it, built by the same function (`domain.worker_json`), so the
dashboard keeps one shape of a worker whether it asked or was told. It is built here, at the
edge, once per event and only while someone is subscribed, from the event itself (which carries
the few fields of the worker its own do not say, `WorkerMetricsCollected.to_worker`). Not in
the collector, and not carried whole over the buses: that doubled each event's JSON on the
local channel and Redis, and cost 7 % of a 10,000-worker cycle's CPU whether anybody watched or
not; this way it costs 2.5 % unwatched, 5 % watched (`bench.event_path`; docs/architecture.md,
"The dashboard's one shape").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from cml_monitor.domain import Worker, WorkerMetricsCollected, worker_json

logger = logging.getLogger(__name__)

STALL_SECONDS = 30.0
WRITE_BYTES = 256 * 1024
# Two cycles of a 10,000-worker fleet for a client that reads: a `metrics` event is ~2 KB (~3.5
# KB with a controller) since it carries `worker`, about twice what it was when this was 16 MiB.
MAX_BACKLOG_BYTES = 40 * 1024 * 1024


def not_scheduled(worker: Worker) -> datetime | None:
    return None


def frame(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event, encoded once and shared by every client.

    The bytes `sse_starlette.ServerSentEvent(data=..., event=...).encode()` gives (a test checks
    it), written out: that splits the data on line breaks with a regular expression, and JSON
    from `json.dumps` has none (it escapes them); the split was a third of a `metrics` frame's
    cost once the frame carried its `worker`.
    """
    return f"event: {event}\r\ndata: {json.dumps(data, default=str)}\r\n\r\n".encode()


def events_in(chunk: bytes) -> int:
    return chunk.count(b"\r\n\r\n")


class Subscriber:
    """One client's backlog: batches not taken yet, their bytes, since when data has waited."""

    def __init__(self) -> None:
        self.backlog: deque[bytes] = deque()
        self.bytes = 0
        self.waiting_since: float | None = None  # when data first waited untaken, None if none
        self.dropped = False
        self.ready = asyncio.Event()

    def add(self, chunk: bytes, now: float) -> None:
        self.backlog.append(chunk)
        self.bytes += len(chunk)
        if self.waiting_since is None:
            self.waiting_since = now
        self.ready.set()

    def take(self, max_chunk: int, now: float) -> bytes:
        """What queued up meanwhile, as one write of at most `WRITE_BYTES` (or one batch).

        Small events are joined into one write; large batches go one at a time, uncopied (a
        join of one is the batch itself), so a backlog is never copied whole for one client.
        """
        taken = [self.backlog.popleft()]
        size = len(taken[0])
        while self.backlog and len(taken) < max_chunk and size + len(self.backlog[0]) <= WRITE_BYTES:
            taken.append(self.backlog.popleft())
            size += len(taken[-1])
        self.bytes -= size
        self.waiting_since = now if self.backlog else None
        if not self.backlog:
            self.ready.clear()
        return b"".join(taken)

    def clear(self) -> int:
        lost = sum(events_in(chunk) for chunk in self.backlog)
        self.backlog.clear()
        self.bytes = 0
        return lost


class EventHub:
    """Fan-out of metrics events to subscribers (an observer of the monitoring loop)."""

    def __init__(
        self,
        queue_size: int = 1000,
        max_chunk: int = 1000,
        *,
        max_backlog_bytes: int = MAX_BACKLOG_BYTES,
        stall_seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # When a worker is collected next, as this replica's API says it: the runtime points
        # this at `WorkerOperations.next_run_at` once it is built (the hub is built first).
        self.next_run: Callable[[Worker], datetime | None] = not_scheduled
        self._queue_size = queue_size  # batches (a region's events each), not single events
        self._max_chunk = max_chunk
        self._max_backlog_bytes = max_backlog_bytes
        self._stall_seconds = stall_seconds
        self._clock = clock
        self._subscribers: set[Subscriber] = set()
        self.dropped = 0  # events a client fell behind by and was told to resync for
        self.disconnected = 0  # clients dropped for not taking data

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Observer of the monitoring loop: a region's events, encoded once, to every client.

        The batch is encoded once and queued once per client: 500 workers and 200 clients cost
        200 queue writes, not 100,000, so the loop stays free for API requests.
        """
        if not events or not self._subscribers:
            return
        frames = []
        for index, event in enumerate(events, start=1):
            frames.append(frame("metrics", self.event_json(event)))
            if index % 200 == 0:
                await asyncio.sleep(0)  # a region of thousands is encoded in slices
        self._put(b"".join(frames))

    def event_json(self, event: WorkerMetricsCollected) -> dict[str, Any]:
        """A `metrics` event as clients get it: its JSON and `worker`, the worker as `GET
        /api/workers/{id}` answers it (left out for an event that cannot say the whole worker,
        one from a collector older than this: the dashboard then reloads the fleet)."""
        data = event.to_json()
        worker = event.to_worker()
        if worker is not None:
            data["worker"] = worker_json(worker, self.next_run(worker))
        return data

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def backlog_bytes(self) -> list[int]:
        """Each client's untaken backlog in bytes (for tests and the benchmark)."""
        return [subscriber.bytes for subscriber in self._subscribers]

    def publish(self, event: str, data: dict[str, Any]) -> None:
        self._put(frame(event, data))

    def _put(self, chunk: bytes) -> None:
        now = self._clock()
        for subscriber in list(self._subscribers):
            waited = now - subscriber.waiting_since if subscriber.waiting_since is not None else 0.0
            if waited >= self._stall_seconds:
                self._drop(subscriber, f"took no data for {waited:.0f} s")
                continue
            if subscriber.bytes > self._max_backlog_bytes:
                self._drop(subscriber, f"its backlog passed {self._max_backlog_bytes} bytes")
                continue
            if len(subscriber.backlog) >= self._queue_size:
                self._resync(subscriber, now)
            subscriber.add(chunk, now)

    def _resync(self, subscriber: Subscriber, now: float) -> None:
        """A client too slow for whole cycles of the fleet: drop its backlog, tell it to reload."""
        lost = subscriber.clear()
        self.dropped += lost
        subscriber.add(frame("resync", {"dropped": lost}), now)
        logger.warning("An event stream client fell %d events behind; told it to reload", lost)

    def _drop(self, subscriber: Subscriber, why: str) -> None:
        """A client that does not take data: its backlog is released and its stream ends."""
        backlog = subscriber.bytes
        subscriber.clear()
        subscriber.dropped = True
        subscriber.ready.set()
        self._subscribers.discard(subscriber)
        self.disconnected += 1
        logger.warning(
            "Disconnected an event stream client with %d bytes waiting: %s; it reloads when it reconnects",
            backlog,
            why,
        )

    async def subscribe(self, *, greeting: bytes | None = None) -> AsyncIterator[bytes]:
        """Encoded events as they come; what queued up meanwhile goes out as one write.

        `greeting` is queued first, once the client is subscribed: nothing published after it
        is missed. The stream ends when the hub drops the client.
        """
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        if greeting is not None:
            subscriber.add(greeting, self._clock())
        try:
            while True:
                await subscriber.ready.wait()
                if subscriber.dropped:
                    return
                yield subscriber.take(self._max_chunk, self._clock())
        finally:
            self._subscribers.discard(subscriber)
            subscriber.clear()
