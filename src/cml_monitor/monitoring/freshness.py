"""How fresh the fleet's figures are, known to every replica from the shared database.

Collectors record each region run (`record`); every replica — an API replica as much as a
collector — re-reads those records in the background and answers from memory: the
last-collection timestamp per region for `/metrics`, a `collection` readiness check that says
which region is stale, the dashboard's banner, and when a worker is collected next (derived
from the aligned schedule, so an API replica never asks the job store). A request never waits
on the database for any of this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain.collections import (
    STALE_AFTER_INTERVALS,
    RegionCollection,
    RegionOutcome,
    next_fire_time,
)
from cml_monitor.readiness import Check

from .ports import CollectionStatusStore

logger = logging.getLogger(__name__)


class FleetFreshness:
    def __init__(
        self,
        store: CollectionStatusStore,
        *,
        interval_seconds: int,
        holder: str,
        enabled: bool = True,
        clock: Clock = utcnow,
        on_collected: Callable[[str, datetime], None] | None = None,
    ) -> None:
        self._store = store
        self.interval_seconds = interval_seconds
        self._holder = holder
        self.enabled = enabled
        self._clock = clock
        self._on_collected = on_collected  # region, its last completed collection
        self._rows: dict[str, RegionCollection] = {}
        self._watched: dict[str, datetime] = {}  # region with workers → first registered
        self.read_at: datetime | None = None
        self.read_error: str | None = None
        self._started_at = clock()

    async def record(self, outcome: RegionOutcome) -> None:
        """A region run of this replica: remembered here at once, then in the shared database."""
        before = self._rows.get(outcome.region)
        failures = 0 if outcome.succeeded else (before.consecutive_failures if before else 0) + 1
        self._rows[outcome.region] = RegionCollection(
            region=outcome.region,
            interval_seconds=self.interval_seconds,
            last_attempt_at=outcome.at,
            last_success_at=outcome.at if outcome.succeeded else (before.last_success_at if before else None),
            consecutive_failures=failures,
            last_error=outcome.error,
        )
        self._watched.setdefault(outcome.region, outcome.at)
        self._export()
        await self._store.record(outcome, interval_seconds=self.interval_seconds, holder=self._holder)

    async def refresh(self) -> None:
        """Re-read every region's record (the background loop calls this; requests never do)."""
        try:
            rows, watched = await self._store.read()
        except Exception as exc:
            self.read_error = f"{type(exc).__name__}: {exc}"
            raise
        self._rows = {row.region: self._newer(row) for row in rows}
        self._watched = watched
        self.read_at = self._clock()
        self.read_error = None
        self._export()

    async def reread(self) -> None:
        """`refresh()` for the background loop: never raises, logs a failure once per outage."""
        had_error = self.read_error is not None
        try:
            await self.refresh()
        except Exception as exc:
            if not had_error:
                logger.error("Could not read the collection records: %s", exc)
        else:
            if had_error:
                logger.info("Reading the collection records works again")

    def _newer(self, row: RegionCollection) -> RegionCollection:
        """The database's row, unless this replica has just recorded something newer."""
        mine = self._rows.get(row.region)
        return mine if mine is not None and mine.last_attempt_at > row.last_attempt_at else row

    def _export(self) -> None:
        if self._on_collected is None:
            return
        for row in self._rows.values():
            if row.last_success_at is not None:
                self._on_collected(row.region, row.last_success_at)

    # -- answers from memory ---------------------------------------------------------------

    def stale(self, now: datetime | None = None) -> list[str]:
        """One line per region that has not completed a collection for two intervals."""
        if not self.enabled:
            return []
        now = now or self._clock()
        limit = timedelta(seconds=STALE_AFTER_INTERVALS * self.interval_seconds)
        problems = []
        for region, since in sorted(self._watched.items()):
            row = self._rows.get(region)
            if row is None:
                since = max(since, self._started_at)  # nobody could have collected before we looked
                if now - since > limit:
                    age = int((now - since).total_seconds())
                    problems.append(
                        f"{region} never collected ({age} s since it had workers), "
                        f"interval {self.interval_seconds} s"
                    )
                continue
            problem = replace(row, interval_seconds=self.interval_seconds).stale_problem(now, since)
            if problem is not None:
                problems.append(problem)
        return problems

    def check(self) -> Check:
        """The `collection` readiness check: ok, disabled, or degraded (stale regions, or unknown)."""
        if not self.enabled:
            return Check.disabled("collection")
        if self.read_at is None and self.read_error is not None:
            detail = f"degraded (unknown: cannot read the collection records: {self.read_error})"
            return Check.degraded("collection", detail)
        stale = self.stale()
        return (
            Check.ok("collection")
            if not stale
            else Check.degraded("collection", f"degraded (stale: {'; '.join(stale)})")
        )

    def next_run_at(self, region: str) -> datetime | None:
        """When the region's job fires next, while someone collects it (None when nobody does)."""
        if not self.enabled:
            return None
        now = self._clock()
        row = self._rows.get(region)
        if row is None or row.last_success_at is None:
            if not any(r.last_success_at for r in self._rows.values()):
                return None  # no collector has ever worked here
        elif now - row.last_success_at > timedelta(seconds=STALE_AFTER_INTERVALS * self.interval_seconds):
            return None
        return next_fire_time(now, self.interval_seconds)

    def regions(self) -> list[dict[str, Any]]:
        """Every watched region's collection, for the API and the dashboard's banner."""
        now = self._clock()
        stale = {line.split(" ", 1)[0] for line in self.stale(now)}
        out = []
        for region in sorted(set(self._watched) | set(self._rows)):
            row = self._rows.get(region)
            out.append(
                {
                    "region": region,
                    "last_collected_at": row.last_success_at if row else None,
                    "last_attempt_at": row.last_attempt_at if row else None,
                    "consecutive_failures": row.consecutive_failures if row else 0,
                    "last_error": row.last_error if row else None,
                    "stale": region in stale,
                    "next_run_at": self.next_run_at(region) if region in self._watched else None,
                }
            )
        return out
