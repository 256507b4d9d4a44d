"""How each region's collection went: the facts that keep the monitor from going quiet unheard.

A `RegionOutcome` is one run's result, told by the replica that ran it. A `RegionCollection` is
what the shared database remembers of a region's runs, so that every replica — API replicas
included — can say how fresh the fleet's figures are, and when the next collection is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Every region job fires at anchor + k·interval (an aligned trigger), so any replica can tell
# when the next run is due without asking the job store.
TRIGGER_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)

# A region is stale when it has not completed a collection for this many intervals.
STALE_AFTER_INTERVALS = 2


def next_fire_time(now: datetime, interval_seconds: int) -> datetime:
    """The first aligned fire time strictly after `now`."""
    step = timedelta(seconds=interval_seconds)
    elapsed = now - TRIGGER_ANCHOR
    return TRIGGER_ANCHOR + step * (elapsed // step + 1)


@dataclass(frozen=True, slots=True)
class RegionOutcome:
    """One region run: it completed, or it failed (AWS, database, lease store) and why."""

    region: str
    at: datetime
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class RegionCollection:
    """A region's collection as the database remembers it."""

    region: str
    interval_seconds: int
    last_attempt_at: datetime
    last_success_at: datetime | None
    consecutive_failures: int
    last_error: str | None

    def stale_problem(self, now: datetime, since: datetime | None = None) -> str | None:
        """Why this region counts as stale (no completed collection for 2 intervals), or None."""
        limit = timedelta(seconds=STALE_AFTER_INTERVALS * self.interval_seconds)
        last = self.last_success_at
        if last is not None and now - last <= limit:
            return None
        if last is None and since is not None and now - since <= limit:
            return None
        if last is None:
            return f"{self.region} never collected, interval {self.interval_seconds} s"
        age = int((now - last).total_seconds())
        return f"{self.region} last collected {age} s ago, interval {self.interval_seconds} s"
