"""`RedisEventBus`: every replica's collections reach every replica's live views.

With several replicas, the one holding a region's lease collects it; without a bus, a
dashboard connected to another replica would never see those workers change. With
`EVENT_BUS_URL=redis://…`, each replica publishes its region batches (as JSON) on one Redis
pub/sub channel and feeds what it receives, its own batches included, to its local sinks: the
SSE hub and the Prometheus gauges. Alerts do not travel on the bus: they are evaluated once, by
the replica that collected, and stored in the shared database.

Pub/sub is fire-and-forget: a replica that is disconnected for a moment misses those live
events (the database still has them; the dashboard reloads on reconnect), and the bus
reconnects with backoff, reporting its state on `/ready`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis

from cml_monitor.domain import WorkerMetricsCollected
from cml_monitor.monitoring import ObserverPublisher

logger = logging.getLogger(__name__)

CHANNEL = "cml_monitor.events"


class EventBus(Protocol):
    """What the runtime needs of a bus: Redis between machines, or `serve`'s local channel."""

    problem: str | None

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


# Builds the bus around the fan-out to the sinks it feeds (the SSE hub and the gauges).
EventBusFactory = Callable[[ObserverPublisher], EventBus]


class RedisEventBus:
    def __init__(self, url: str, sinks: ObserverPublisher, *, channel: str = CHANNEL) -> None:
        """`sinks` gets every batch received, through the same isolated, timed fan-out as the
        monitoring loop's observers."""
        self._redis = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._sinks = sinks
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.problem: str | None = "not connected yet"

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Observer of the monitoring loop: publish the batch for every replica (this one too)."""
        if events:
            await self._redis.publish(self._channel, json.dumps([e.to_bus_json() for e in events]))

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="event-bus")
        try:
            async with asyncio.timeout(5.0):
                await self._subscribed.wait()
        except TimeoutError:
            logger.error("The event bus is not connected yet (%s); retrying in the background", self.problem)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._redis.aclose()

    async def _listen(self) -> None:
        delay = 1.0
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self.problem, delay = None, 1.0
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.problem = f"unavailable: {type(exc).__name__}"
                logger.error("Event bus connection lost (%s); reconnecting in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _deliver(self, raw: Any) -> None:
        try:
            events = [WorkerMetricsCollected.from_json(item) for item in json.loads(raw)]
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("Ignored a malformed event-bus message: %s", exc)
            return
        await self._sinks.publish(events)
