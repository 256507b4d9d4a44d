"""A DataLoader with a time window: many callers ask for one key each, one call serves them all.

Per-worker jobs fire at the same aligned instant but reach the loader a few milliseconds apart
(each job is its own task, and job-store I/O sits between them). A loader that dispatches on
the next loop tick (like `aiodataloader`) would cut that crowd into many small batches; this
one waits `window` seconds after the first key, or until `max_batch_size` keys are queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

logger = logging.getLogger(__name__)


class BatchLoader(Generic[K, V]):
    """Collects keys for `window` seconds, then resolves them all with one `batch_fn` call."""

    def __init__(
        self,
        batch_fn: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        window: float = 0.05,
        max_batch_size: int = 20_000,
    ) -> None:
        self._batch_fn = batch_fn
        self._window = window
        self._max = max_batch_size
        self._queue: dict[K, list[asyncio.Future[V]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def load(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._queue.setdefault(key, []).append(future)
        if len(self._queue) >= self._max:
            self._dispatch()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._dispatch)
        return await asyncio.shield(future)

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue:
            return
        batch, self._queue = self._queue, {}
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: dict[K, list[asyncio.Future[V]]]) -> None:
        try:
            results = await self._batch_fn(list(batch))
        except BaseException as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key, futures in batch.items():
            for future in futures:
                if future.done():
                    continue
                if key in results:
                    future.set_result(results[key])
                else:
                    future.set_exception(KeyError(f"batch returned no result for {key!r}"))

    @property
    def busy(self) -> bool:
        return bool(self._queue or self._running)

    async def drain(self) -> None:
        """Dispatch what is queued now and wait for every batch under way to finish."""
        self._dispatch()
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
