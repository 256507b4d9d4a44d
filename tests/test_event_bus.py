"""The event bus delivers through the same isolated, timed fan-out as the monitoring loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cml_monitor.domain import WorkerMetricsCollected
from cml_monitor.event_bus import RedisEventBus
from cml_monitor.monitoring import ObserverPublisher

from .helpers import eventually, metrics_event


class Keeps:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        self.batches.append([e.worker_id for e in events])


class Raises:
    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        raise RuntimeError("broken sink")


class Hangs:
    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        await asyncio.Event().wait()


async def test_a_broken_or_hung_sink_neither_stops_the_others_nor_the_bus(redis_url: str) -> None:
    kept, failed = Keeps(), []
    sinks = ObserverPublisher([Raises(), Hangs(), kept], timeout=0.2, on_failure=failed.append)
    bus = RedisEventBus(redis_url, sinks)
    await bus.start()
    try:
        await bus.observe([metrics_event("w-1", cpu=10.0)])
        await bus.observe([metrics_event("w-2", cpu=20.0)])
        await eventually(lambda: kept.batches == [["w-1"], ["w-2"]], timeout=10)
        await eventually(lambda: sorted(failed) == ["Hangs", "Hangs", "Raises", "Raises"], timeout=10)
        assert bus.problem is None
    finally:
        await bus.close()
