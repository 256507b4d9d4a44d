"""`FleetMonitor` owns runs: collections in flight are drained; a stop cancels the late ones."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cml_monitor.monitoring import FleetMonitor, MonitoredWorkers, ObserverPublisher
from cml_monitor.monitoring.collector import CollectionReport


class SlowCollector:
    """Collects nothing until released (a fake of our own collector)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def collect(self, worker_ids: Sequence[str]) -> CollectionReport:
        self.started.set()
        await self.release.wait()
        return CollectionReport()


def monitor(collector: SlowCollector) -> FleetMonitor:
    store: Any = None  # a collection outside a region run never lists workers
    return FleetMonitor(store, collector, ObserverPublisher(), MonitoredWorkers())  # type: ignore[arg-type]


async def test_drain_waits_for_a_collection_in_flight() -> None:
    collector = SlowCollector()
    fleet = monitor(collector)
    task = fleet.collect_soon("w-1")
    await collector.started.wait()
    drained = asyncio.ensure_future(fleet.drain())
    await asyncio.sleep(0)
    assert not drained.done()
    collector.release.set()
    await asyncio.wait_for(drained, 5)
    assert task.done() and not task.cancelled()


async def test_stop_cancels_what_runs_past_its_timeout() -> None:
    collector = SlowCollector()
    fleet = monitor(collector)
    task = fleet.collect_soon("w-1")
    await collector.started.wait()
    await asyncio.wait_for(fleet.stop(timeout=0.05), 5)
    assert task.cancelled()
