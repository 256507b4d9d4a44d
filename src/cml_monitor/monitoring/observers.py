"""Handing a region's events to every observer: side by side, each one isolated and timed.

The one fan-out: the monitoring loop publishes through it, and the event bus delivers what it
receives through it too.

An observer is anything with `async observe(events)`; the seed's form, a plain callable
`observer(metrics_data: dict)` (sync or async), is wrapped and called once per event with the
event's JSON. Observers run concurrently; one that raises, or is still busy after `timeout`
seconds, is logged and counted and the others are not held up by it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from cml_monitor.domain import EventObserver, WorkerMetricsCollected

logger = logging.getLogger(__name__)

SeedObserver = Callable[[dict[str, Any]], Any]


class PerEventObserver:
    """The seed's plain callable, given each event's JSON in turn."""

    def __init__(self, function: SeedObserver) -> None:
        self.function = function

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        for event in events:
            outcome = self.function(event.to_json())
            if inspect.isawaitable(outcome):
                await outcome

    def __repr__(self) -> str:
        return f"PerEventObserver({self.function!r})"


def as_observer(observer: EventObserver | SeedObserver) -> EventObserver:
    if isinstance(observer, EventObserver):
        return observer
    return PerEventObserver(observer)


class ObserverPublisher:
    """Publishes event batches to its observers; `on_failure` is told each observer's misses."""

    def __init__(
        self,
        observers: Sequence[EventObserver | SeedObserver] = (),
        *,
        timeout: float = 60.0,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._observers = [as_observer(o) for o in observers]
        self._timeout = timeout
        self._on_failure = on_failure

    async def publish(self, events: Sequence[WorkerMetricsCollected]) -> None:
        if events:
            await asyncio.gather(*(self._run(observer, events) for observer in self._observers))

    async def _run(self, observer: EventObserver, events: Sequence[WorkerMetricsCollected]) -> None:
        name = type(observer).__name__ if not isinstance(observer, PerEventObserver) else repr(observer)
        try:
            async with asyncio.timeout(self._timeout):
                await observer.observe(events)
        except TimeoutError:
            logger.error(
                "Observer %s took over %.0f s on %d events; left behind", name, self._timeout, len(events)
            )
            self._failed(name)
        except Exception:
            logger.exception("Observer %s failed on %d events", name, len(events))
            self._failed(name)

    def _failed(self, name: str) -> None:
        if self._on_failure is not None:
            self._on_failure(name)
