"""Metric history over time: raw samples for a while, then hourly averages and maxima.

`roll_up` aggregates every complete hour into `worker_metrics_hourly` (recomputing the last
few hours, so late samples count) with one INSERT … SELECT … GROUP BY; `prune` removes raw
samples older than the raw retention and hourly rows older than the long retention. On
PostgreSQL the raw table is partitioned by day, so pruning it drops whole days' partitions
(and `maintain` creates the coming days' first); on SQLite it is one DELETE. `series` answers a
time range at the resolution it deserves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal_column, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from . import partitions
from .tables import worker_metrics, worker_metrics_hourly

logger = logging.getLogger(__name__)

RAW_UP_TO = timedelta(hours=6)  # ranges up to this are answered point by point
FIVE_MINUTES = 300
HOUR = 3600
RECOMPUTE = timedelta(hours=3)
PARTITIONS_AHEAD = timedelta(days=3)  # maintenance runs every few minutes: days of slack


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a retention run removed (on PostgreSQL raw days go as partitions, not counted rows)."""

    raw_rows: int
    raw_partitions: int
    hourly_rows: int


@dataclass(frozen=True, slots=True)
class Point:
    timestamp: datetime
    status: str | None
    cpu_utilization: float | None
    memory_utilization: float | None
    active_labs_count: float | None
    cpu_max: float | None = None
    memory_max: float | None = None
    running_nodes: float | None = None  # raw history only: the hourly rollup does not keep it
    disk_used_percent: float | None = None


def floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _avg(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


class HistoryStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        raw_retention: timedelta,
        retention: timedelta,
        lock_timeout: float = 5.0,
    ) -> None:
        self._engine = engine
        self.raw_retention = raw_retention
        self.retention = retention
        self.lock_timeout = lock_timeout  # seconds a partition change waits for the table
        self._is_partitioned: bool | None = None  # the schema does not change while we run

    def _hour_bucket(self) -> Any:
        if self._engine.dialect.name == "sqlite":
            # Timestamps are stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): keep the hour.
            return func.strftime("%Y-%m-%d %H:00:00.000000", worker_metrics.c.timestamp)
        return func.date_trunc(literal_column("'hour'"), worker_metrics.c.timestamp)

    async def roll_up(self, now: datetime) -> int:
        """Aggregate complete hours; returns the number of hourly rows written."""
        end = floor_hour(now)
        async with self._engine.begin() as conn:
            latest = (await conn.execute(select(func.max(worker_metrics_hourly.c.hour)))).scalar_one_or_none()
            if latest is None:
                oldest = (
                    await conn.execute(select(func.min(worker_metrics.c.timestamp)))
                ).scalar_one_or_none()
                if oldest is None:
                    return 0
                start = floor_hour(oldest.replace(tzinfo=UTC) if oldest.tzinfo is None else oldest)
            else:
                latest = latest.replace(tzinfo=UTC) if latest.tzinfo is None else latest
                start = min(latest + timedelta(hours=1), end - RECOMPUTE)
            if start >= end:
                return 0
            await conn.execute(
                delete(worker_metrics_hourly).where(
                    worker_metrics_hourly.c.hour >= start, worker_metrics_hourly.c.hour < end
                )
            )
            bucket = self._hour_bucket().label("hour")
            aggregate = (
                select(
                    worker_metrics.c.worker_id,
                    bucket,
                    func.count().label("samples"),
                    func.avg(worker_metrics.c.cpu_utilization),
                    func.max(worker_metrics.c.cpu_utilization),
                    func.avg(worker_metrics.c.memory_utilization),
                    func.max(worker_metrics.c.memory_utilization),
                    func.avg(worker_metrics.c.active_labs_count),
                    func.max(worker_metrics.c.active_labs_count),
                )
                .where(worker_metrics.c.timestamp >= start, worker_metrics.c.timestamp < end)
                .group_by(worker_metrics.c.worker_id, bucket)
            )
            columns = [
                "worker_id",
                "hour",
                "samples",
                "cpu_avg",
                "cpu_max",
                "memory_avg",
                "memory_max",
                "labs_avg",
                "labs_max",
            ]
            result = await conn.execute(insert(worker_metrics_hourly).from_select(columns, aggregate))
        return max(0, result.rowcount or 0)

    async def _partitioned(self) -> bool:
        if self._is_partitioned is None:
            if self._engine.dialect.name != "postgresql":
                self._is_partitioned = False
            else:
                async with self._engine.connect() as conn:
                    self._is_partitioned = await conn.run_sync(partitions.partitioned)
        return self._is_partitioned

    async def ensure_partitions(self, now: datetime) -> int:
        """Create the raw table's partitions from the oldest retained day to a few days ahead."""
        if not await self._partitioned():
            return 0
        first, last = (now - self.raw_retention).date(), (now + PARTITIONS_AHEAD).date()
        return await self._change_partitions("create", partitions.ensure, first, last) or 0

    async def _change_partitions(self, what: str, change: Any, *args: Any) -> Any:
        """Run a partition change under the maintenance lock; None when the table stayed locked
        past `lock_timeout` (a long query, or another replica at the same work)."""
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(partitions.lock, self.lock_timeout)
                return await conn.run_sync(change, *args)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != partitions.LOCK_NOT_AVAILABLE:
                raise
            logger.warning(
                "History: could not %s partitions within %g s (the table is busy) - next run",
                what,
                self.lock_timeout,
            )
            return None

    async def prune(self, now: datetime) -> Pruned:
        """Remove raw samples past the raw retention and hourly rows past the long retention."""
        cutoff = now - self.raw_retention
        if await self._partitioned():
            dropped, raw = await self._change_partitions("drop", partitions.drop_before, cutoff) or (0, 0)
        else:
            async with self._engine.begin() as conn:
                result = await conn.execute(delete(worker_metrics).where(worker_metrics.c.timestamp < cutoff))
            dropped, raw = 0, result.rowcount or 0
        async with self._engine.begin() as conn:
            hourly = await conn.execute(
                delete(worker_metrics_hourly).where(worker_metrics_hourly.c.hour < now - self.retention)
            )
        return Pruned(raw, dropped, hourly.rowcount or 0)

    async def maintain(self, now: datetime) -> None:
        created = await self.ensure_partitions(now)
        rolled = await self.roll_up(now)
        pruned = await self.prune(now)
        if created or rolled or pruned.raw_rows or pruned.raw_partitions or pruned.hourly_rows:
            logger.info(
                "History: %d daily partitions created, %d hourly rows rolled up, %d raw rows and "
                "%d daily partitions and %d hourly rows pruned",
                created,
                rolled,
                pruned.raw_rows,
                pruned.raw_partitions,
                pruned.hourly_rows,
            )

    @staticmethod
    def resolution_for(span: timedelta, step: int | None) -> int:
        """0 = every sample; else the bucket width in seconds."""
        if step is not None:
            return step
        if span <= RAW_UP_TO:
            return 0
        if span <= timedelta(hours=48):
            return FIVE_MINUTES
        return HOUR

    async def series(
        self, worker_id: str, since: datetime, until: datetime, step: int | None, limit: int
    ) -> tuple[int, str, list[Point]]:
        """(step, source, points) for the range, oldest first."""
        resolution = self.resolution_for(until - since, step)
        raw_covers = since >= until - self.raw_retention
        if resolution >= HOUR or not raw_covers:
            step = max(resolution, HOUR)
            points = await self._hourly(worker_id, since, until)
            source = "hourly"
            # The hours not rolled up yet (the roll-up runs every few minutes, and a new worker
            # has none): filled from the raw samples, averaged the same way, so a week's chart
            # is not empty while the hour's chart has points.
            gap_from = max(since, until - self.raw_retention)
            if points:
                gap_from = max(gap_from, points[-1].timestamp + timedelta(seconds=HOUR))
            if gap_from < until:
                recent = await self._raw(worker_id, gap_from, until, 200_000)
                if recent:
                    points += _bucket(recent, HOUR)
                    source = "hourly+raw"
            return step, source, (_bucket(points, step) if step > HOUR else points)[-limit:]
        points = await self._raw(worker_id, since, until, limit if resolution == 0 else 200_000)
        if resolution == 0:
            return 0, "raw", points
        return resolution, "raw", _bucket(points, resolution)[-limit:]

    async def _raw(self, worker_id: str, since: datetime, until: datetime, limit: int) -> list[Point]:
        """The newest `limit` raw samples of the range, oldest first."""
        m = worker_metrics.c
        query = (
            # Only the charted columns: on PostgreSQL the (worker, time) index carries them all.
            select(
                m.timestamp,
                m.status,
                m.cpu_utilization,
                m.memory_utilization,
                m.active_labs_count,
                m.running_nodes,
                m.disk_used_percent,
            )
            .where(
                worker_metrics.c.worker_id == worker_id,
                worker_metrics.c.timestamp >= since,
                worker_metrics.c.timestamp <= until,
            )
            .order_by(worker_metrics.c.timestamp.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = list(reversed((await conn.execute(query)).all()))
        return [
            Point(
                r.timestamp,
                r.status,
                r.cpu_utilization,
                r.memory_utilization,
                r.active_labs_count,
                running_nodes=r.running_nodes,
                disk_used_percent=r.disk_used_percent,
            )
            for r in rows
        ]

    async def _hourly(self, worker_id: str, since: datetime, until: datetime) -> list[Point]:
        """The hourly rows of the range, oldest first."""
        query = (
            select(worker_metrics_hourly)
            .where(
                worker_metrics_hourly.c.worker_id == worker_id,
                worker_metrics_hourly.c.hour >= floor_hour(since),
                worker_metrics_hourly.c.hour <= until,
            )
            .order_by(worker_metrics_hourly.c.hour)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        points = [
            Point(r.hour, None, r.cpu_avg, r.memory_avg, r.labs_avg, r.cpu_max, r.memory_max) for r in rows
        ]
        return points


def _bucket(points: list[Point], step: int) -> list[Point]:
    """Average (and maximum) per bucket of `step` seconds, bucket start as its timestamp."""
    buckets: dict[int, list[Point]] = {}
    for point in points:
        buckets.setdefault(int(point.timestamp.timestamp()) // step, []).append(point)
    return [_merge(buckets[key], datetime.fromtimestamp(key * step, UTC)) for key in sorted(buckets)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _merge(members: list[Point], at: datetime) -> Point:
    if len(members) == 1:
        # The usual case when the step is the poll interval (7 days of 5-minute points): no lists.
        only = members[0]
        return Point(
            timestamp=at,
            status=only.status,
            cpu_utilization=_round(only.cpu_utilization),
            memory_utilization=_round(only.memory_utilization),
            active_labs_count=_round(only.active_labs_count),
            cpu_max=only.cpu_utilization if only.cpu_max is None else only.cpu_max,
            memory_max=only.memory_utilization if only.memory_max is None else only.memory_max,
            running_nodes=_round(only.running_nodes),
            disk_used_percent=_round(only.disk_used_percent),
        )
    cpu = [p.cpu_utilization for p in members if p.cpu_utilization is not None]
    memory = [p.memory_utilization for p in members if p.memory_utilization is not None]
    labs = [p.active_labs_count for p in members if p.active_labs_count is not None]
    nodes = [p.running_nodes for p in members if p.running_nodes is not None]
    disk = [p.disk_used_percent for p in members if p.disk_used_percent is not None]
    cpu_max = [p.cpu_max if p.cpu_max is not None else p.cpu_utilization for p in members]
    memory_max = [p.memory_max if p.memory_max is not None else p.memory_utilization for p in members]
    return Point(
        timestamp=at,
        status=members[-1].status,
        cpu_utilization=_avg(cpu),
        memory_utilization=_avg(memory),
        active_labs_count=_avg(labs),
        cpu_max=max((v for v in cpu_max if v is not None), default=None),
        memory_max=max((v for v in memory_max if v is not None), default=None),
        running_nodes=_avg(nodes),
        disk_used_percent=_avg(disk),
    )
