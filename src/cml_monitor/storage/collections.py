"""Each region's last collection in the shared database: written by collectors, read by all.

The replica that ran a region writes one row per run (an upsert keyed by region). Every replica
reads the rows — cheaply, one small table — to export the last-collection figure, to say in
`/ready` whether a region is stale, and to derive when the next collection is due, so an API
replica never has to ask the job store or guess.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.domain.collections import RegionCollection, RegionOutcome

from .tables import region_collections, workers


class CollectionStatusStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, outcome: RegionOutcome, *, interval_seconds: int, holder: str) -> None:
        """Remember one run: a success resets the failure streak, a failure lengthens it."""
        values: dict[str, object] = {
            "interval_seconds": interval_seconds,
            "last_attempt_at": outcome.at,
            "holder": holder,
        }
        if outcome.succeeded:
            values |= {"last_success_at": outcome.at, "consecutive_failures": 0, "last_error": None}
        else:
            values |= {
                "consecutive_failures": region_collections.c.consecutive_failures + 1,
                "last_error": (outcome.error or "")[:1024],
            }
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(region_collections)
                .where(region_collections.c.region == outcome.region)
                .values(**values)
            )
            if changed.rowcount:
                return
            first = {
                "region": outcome.region,
                "interval_seconds": interval_seconds,
                "last_attempt_at": outcome.at,
                "last_success_at": outcome.at if outcome.succeeded else None,
                "consecutive_failures": 0 if outcome.succeeded else 1,
                "last_error": None if outcome.succeeded else (outcome.error or "")[:1024],
                "holder": holder,
            }
            try:
                async with conn.begin_nested():
                    await conn.execute(region_collections.insert().values(**first))
            except IntegrityError:  # another replica wrote the first row meanwhile
                await conn.execute(
                    update(region_collections)
                    .where(region_collections.c.region == outcome.region)
                    .values(**values)
                )

    async def read(self) -> tuple[list[RegionCollection], dict[str, datetime]]:
        """Every region's row, and the regions that have workers to watch (→ first registered)."""
        watched = (
            select(workers.c.aws_region, func.min(workers.c.created_at))
            .where(workers.c.status != "terminated")
            .group_by(workers.c.aws_region)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(region_collections))).all()
            regions = {region: since for region, since in (await conn.execute(watched)).all()}
        return [
            RegionCollection(
                region=row.region,
                interval_seconds=row.interval_seconds,
                last_attempt_at=row.last_attempt_at,
                last_success_at=row.last_success_at,
                consecutive_failures=row.consecutive_failures,
                last_error=row.last_error,
            )
            for row in rows
        ], regions
