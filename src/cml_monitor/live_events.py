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

A stream has one of two shapes, chosen when it opens (`GET /api/events?shape=`):
- `event` (the default): each `metrics` event is the collection's event JSON, as scripts and the
  seed's observers have always read it;
- `worker` (the dashboard's): each `metrics` event is the worker exactly as `GET
  /api/workers/{id}` answers it, built by the same function (`domain.worker_json`), so the
  dashboard keeps one shape of a worker whether it asked or was told.
Each shape is encoded once per batch, and only while a client of that shape listens. The worker
is built here, at the edge, from the event itself (which carries the few fields of the worker its
own do not say, `WorkerMetricsCollected.to_worker`): not in the collector, and not carried whole
over the buses, which doubled each event's JSON on the local channel and Redis and cost 7 % of a
10,000-worker cycle's CPU whether anybody watched or not. Nor as a `worker` key added to every
`event`-shaped event: that doubled the bytes every script's stream was sent, and with 200
clients the API's p95 in the seconds after a cycle starts went from about 50 ms to 120-300 ms
(`bench.load`). An event that cannot say the whole worker (from a collector older than this)
gives the `worker` streams one `resync` for its batch: the dashboard then reloads the fleet.
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
# Two cycles of a 10,000-worker fleet for a client that reads (a `worker`-shaped event is ~1 KB,
# ~2 KB with a controller).
MAX_BACKLOG_BYTES = 40 * 1024 * 1024
SHAPES = ("event", "worker")


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

    def __init__(self, shape: str = "event") -> None:
        self.shape = shape  # which frames it is sent (`SHAPES`)
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
        """Observer of the monitoring loop: a region's events, encoded once per shape, to every client.

        The batch is encoded once per shape that has a client and queued once per client: 500
        workers and 200 clients cost 200 queue writes, not 100,000, so the loop stays free for
        API requests.
        """
        if not events or not self._subscribers:
            return
        listening = {subscriber.shape for subscriber in self._subscribers}
        for shape in SHAPES:
            if shape not in listening:
                continue
            frames = []
            unknown = False
            for index, event in enumerate(events, start=1):
                if shape == "event":
                    frames.append(frame("metrics", event.to_json()))
                elif (data := self.worker_of(event)) is not None:
                    frames.append(frame("metrics", data))
                else:
                    unknown = True
                if index % 200 == 0:
                    await asyncio.sleep(0)  # a region of thousands is encoded in slices
            if unknown:
                frames.append(frame("resync", {"dropped": 0, "reason": "worker unknown"}))
            self._put(b"".join(frames), shape)

    def worker_of(self, event: WorkerMetricsCollected) -> dict[str, Any] | None:
        """The worker as `GET /api/workers/{id}` answers it after this collection, or None for an
        event that cannot say the whole worker (from a collector older than the fields it needs)."""
        worker = event.to_worker()
        return None if worker is None else worker_json(worker, self.next_run(worker))

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def backlog_bytes(self) -> list[int]:
        """Each client's untaken backlog in bytes (for tests and the benchmark)."""
        return [subscriber.bytes for subscriber in self._subscribers]

    def publish(self, event: str, data: dict[str, Any]) -> None:
        self._put(frame(event, data))

    def _put(self, chunk: bytes, shape: str | None = None) -> None:
        """Queue `chunk` for every client, or only for those of `shape`."""
        now = self._clock()
        for subscriber in list(self._subscribers):
            if shape is not None and subscriber.shape != shape:
                continue
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

    async def subscribe(self, *, greeting: bytes | None = None, shape: str = "event") -> AsyncIterator[bytes]:
        """Encoded events of `shape` as they come; what queued up meanwhile goes out as one write.

        `greeting` is queued first, once the client is subscribed: nothing published after it
        is missed. The stream ends when the hub drops the client.
        """
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        subscriber = Subscriber(shape)
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
