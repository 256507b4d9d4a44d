"""Metric history at fleet scale on PostgreSQL: days of 5-minute samples for every worker.

    python -m bench.history [--workers 10000] [--days 7] [--queries 200] [--database URL]
                            [--from-plain]

Empties the database, migrates it (the raw table is partitioned by day), and writes
`workers × days × 288` samples server-side (generate_series, one cycle's rows after another,
as the collector writes them), then vacuums and analyses as autovacuum would. Measured:

- bytes per worker-day of raw samples (tables and indexes of every daily partition);
- the first roll-up into hourly rows and a steady-state one (what runs every 10 minutes);
- a worker's chart query (`HistoryStore.series`, what `GET /api/workers/{id}/metrics` runs),
  p50/p95 over `--queries` random workers, for the dashboard's 7-day and 24-hour ranges and
  for 7 days of raw 5-minute points (`step=300`);
- the retention run a day later (`HistoryStore.prune`: one day's partition dropped);
- with `--from-plain`, the samples are written into the plain table of the schema before
  partitioning (revision 0007) and the upgrade that partitions it is timed (what an existing
  installation's first start after the upgrade costs).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from cml_monitor.storage import create_engine, drop_all, migrate
from cml_monitor.storage.history import HistoryStore

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SAMPLES_PER_DAY = 288
CHUNK = timedelta(hours=4)

LOAD = text(
    """
    INSERT INTO worker_metrics (worker_id, timestamp, status, cpu_utilization, memory_utilization,
                                active_labs_count, running_nodes, disk_used_percent)
    SELECT md5(w::text)::uuid::text, t, 'running', 5 + random() * 90, 20 + random() * 60,
           (random() * 4)::int, (random() * 40)::int, 30 + random() * 50
    FROM generate_series(CAST(:low AS timestamptz), CAST(:high AS timestamptz) - interval '5 minutes',
                         interval '5 minutes') AS t
    CROSS JOIN generate_series(1, :workers) AS w
    """
)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _timed_queries(
    history: HistoryStore, ids: list[str], now: datetime, span: timedelta, step: int | None
) -> dict[str, float]:
    durations, points = [], []
    for worker_id in ids:
        start = time.perf_counter()
        _, _, series = await history.series(worker_id, now - span, now, step, 5000)
        durations.append((time.perf_counter() - start) * 1000)
        points.append(len(series))
    return {
        "p50_ms": round(statistics.median(durations), 2),
        "p95_ms": round(_percentile(durations, 0.95), 2),
        "points": int(statistics.median(points)),
    }


async def run(workers: int, days: int, queries: int, database: str, from_plain: bool) -> dict[str, object]:
    engine = create_engine(database, timeout=3600)
    await drop_all(engine)
    await migrate(engine, "0007" if from_plain else "head")  # 0007: the plain table
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    now -= timedelta(minutes=now.minute % 5)
    start_at = now - timedelta(days=days)
    history = HistoryStore(engine, raw_retention=timedelta(days=days), retention=timedelta(days=30))
    await history.ensure_partitions(now)  # nothing to do on the plain table

    load_start = time.perf_counter()
    low = start_at
    while low < now:
        high = min(low + CHUNK, now)
        async with engine.begin() as conn:
            await conn.execute(LOAD, {"low": low, "high": high, "workers": workers})
        low = high
    load_seconds = time.perf_counter() - load_start
    migration_seconds = None
    if from_plain:
        started = time.perf_counter()
        await migrate(engine)
        migration_seconds = round(time.perf_counter() - started, 1)
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE worker_metrics"))
        rows = (await conn.execute(text("SELECT count(*) FROM worker_metrics"))).scalar_one()
        raw_bytes = (
            await conn.execute(
                text(
                    "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits "
                    "WHERE inhparent = 'worker_metrics'::regclass"
                )
            )
        ).scalar_one()
        partition_count = (
            await conn.execute(
                text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'worker_metrics'::regclass")
            )
        ).scalar_one()

    started = time.perf_counter()
    hourly_rows = await history.roll_up(now)
    first_roll_up = time.perf_counter() - started
    started = time.perf_counter()
    await history.roll_up(now)
    steady_roll_up = time.perf_counter() - started
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE worker_metrics_hourly"))
        hourly_bytes = (
            await conn.execute(text("SELECT pg_total_relation_size('worker_metrics_hourly')"))
        ).scalar_one()

    picks = [random.randint(1, workers) for _ in range(queries)]
    async with engine.connect() as conn:
        chosen = await conn.execute(
            text("SELECT md5(w::text)::uuid::text FROM unnest(CAST(:w AS int[])) AS w"), {"w": picks}
        )
        ids = list(chosen.scalars())
    chart_7d = await _timed_queries(history, ids, now, timedelta(days=7), None)
    chart_24h = await _timed_queries(history, ids, now, timedelta(hours=24), None)
    raw_7d = await _timed_queries(history, ids, now, timedelta(days=7), 300)

    started = time.perf_counter()
    pruned = await history.prune(now + timedelta(days=1))
    retention_seconds = time.perf_counter() - started
    await engine.dispose()

    worker_days = workers * days
    return {
        "workers": workers,
        "days": days,
        "raw_rows": rows,
        "daily_partitions": partition_count - 1,
        "load_seconds": round(load_seconds, 1),
        "migration_seconds": migration_seconds,
        "raw_bytes_per_worker_day": round(raw_bytes / worker_days),
        "raw_gb": round(raw_bytes / 1e9, 2),
        "hourly_rows": hourly_rows,
        "hourly_bytes_per_worker_day": round(hourly_bytes / worker_days),
        "first_roll_up_seconds": round(first_roll_up, 2),
        "steady_roll_up_seconds": round(steady_roll_up, 2),
        "chart_7d": chart_7d,
        "chart_24h": chart_24h,
        "raw_7d_step_300": raw_7d,
        "retention_seconds": round(retention_seconds, 3),
        "retention_partitions_dropped": pruned.raw_partitions,
        "retention_rows_deleted": pruned.raw_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--database", default=POSTGRES_URL)
    parser.add_argument("--from-plain", action="store_true", help="time the upgrade from the plain table")
    args = parser.parse_args()
    if not args.database.startswith("postgresql"):
        parser.error("--database: PostgreSQL only (SQLite keeps one plain table)")
    figures = asyncio.run(run(args.workers, args.days, args.queries, args.database, args.from_plain))
    for key, value in figures.items():
        print(f"{key:>30}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
