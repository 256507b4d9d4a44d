"""The dispatcher's loop stops when cancelled, whatever step its wake-up has reached.

On Python 3.11, `asyncio.wait_for` returns the inner result instead of raising when the cancel
lands just as the awaited event completes: a loop waiting that way outlives its stop, and the
event loop's close then waits on it forever. This walks the cancel across every step of a wake-up.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from cml_monitor.alerts.dispatcher import NotificationDispatcher


class _EmptyOutbox:
    """Nothing is ever due: the loop only sleeps and wakes."""

    async def claim_due(self, now: datetime, lease_until: datetime) -> list[dict[str, Any]]:
        return []

    async def next_due_at(self) -> datetime | None:
        return None


async def test_stop_ends_the_loop_at_every_step_of_a_wake_up() -> None:
    for steps in range(8):
        dispatcher = NotificationDispatcher(_EmptyOutbox(), {}, idle_poll=60.0)  # type: ignore[arg-type]
        dispatcher.start()
        for _ in range(5):  # into its wait
            await asyncio.sleep(0)
        dispatcher.wake()
        for _ in range(steps):
            await asyncio.sleep(0)
        async with asyncio.timeout(2):
            await dispatcher.stop()
