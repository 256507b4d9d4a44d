"""The unreachable-while-we-were-blind policy: a worker is never blamed for our own outage.

A worker is `unreachable` when nobody could collect it for a while; while our database or job
store is down, or the schedule is not running, nobody could, whatever the worker does.
`OwnOutages` remembers when the monitor itself last failed (the region runs note it); the
`UnreachableCheck` judges workers only after the monitor has worked again for a whole window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from cml_monitor.clock import Clock


class OwnOutages:
    """When the monitor's own stores last failed it."""

    def __init__(self) -> None:
        self.last_failure_at: datetime | None = None

    def note(self, now: datetime) -> None:
        self.last_failure_at = now

    def quiet_since(self, now: datetime, window: timedelta) -> bool:
        return self.last_failure_at is None or now - self.last_failure_at >= window


class Schedule(Protocol):
    @property
    def running(self) -> bool: ...

    @property
    def schedule_error(self) -> str | None: ...


class Runs(Protocol):
    def overdue_regions(self, now: datetime) -> list[str]: ...


class UnreachableCheck:
    """Runs the alerting's unreachable check only while our own side has been working."""

    def __init__(
        self,
        outages: OwnOutages,
        schedule: Schedule,
        runs: Runs,
        check: Callable[[], Awaitable[object]],
        *,
        window: timedelta,
        clock: Clock,
    ) -> None:
        self._outages = outages
        self._schedule = schedule
        self._runs = runs
        self._check = check
        self._window = window
        self._clock = clock

    def blind_until_now(self) -> None:
        """Monitoring starts: we were not watching until now."""
        self._outages.note(self._clock())

    async def __call__(self) -> None:
        """Judge the workers, unless the scheduler is stopped, out of date, or a region's runs
        stopped working, or any of that happened within one window; a failed check is ours too."""
        now = self._clock()
        schedule = self._schedule
        if not schedule.running or schedule.schedule_error is not None or self._runs.overdue_regions(now):
            self._outages.note(now)
            return
        if not self._outages.quiet_since(now, self._window):
            return
        try:
            await self._check()
        except Exception:
            self._outages.note(now)
            raise
