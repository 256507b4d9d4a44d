"""`BackgroundTasks`: the loops a runtime starts, and cancelling all of them at its stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run `coroutine` until it ends or `cancel_all()`."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def every(
        self, period: float, work: Callable[[], Awaitable[object]], what: str, *, first_delay: float = 0.0
    ) -> None:
        """Run `work()` every `period` seconds for ever; a failure is logged, the loop goes on."""

        async def loop() -> None:
            await asyncio.sleep(first_delay)
            while True:
                try:
                    await work()
                except Exception as exc:
                    logger.error("%s failed: %s", what, exc)
                await asyncio.sleep(period)

        self.spawn(loop())

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
