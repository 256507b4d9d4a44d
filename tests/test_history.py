"""History: roll-up into hours, pruning, and the resolution a range is answered with (both DBs)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, inspect, select, text

from cml_monitor.domain import Worker
from cml_monitor.storage import CMLWorkerRepository, MetricSample, partitions
from cml_monitor.storage.database import create_engine, migrate
from cml_monitor.storage.history import HistoryStore
from cml_monitor.storage.tables import worker_metrics, worker_metrics_hourly
from cml_monitor.storage.tables import workers as workers_table

# Half past the hour before the last one: recent enough that the running service's own history
# maintenance (which prunes by the real clock) never touches the samples the tests seed.
NOW = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=30, second=0, microsecond=0)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _worker() -> Worker:
    return Worker.register(name="h", aws_region="us-east-1", aws_instance_id="i-0123456789abcdef0", now=NOW)


async def _seed(repository: CMLWorkerRepository, worker: Worker | None = None) -> Worker:
    """Three days of 5-minute samples of a worker (registered here unless given, stored already)."""
    if worker is None:
        worker = await repository.add_async(_worker())
    samples = []
    at = NOW - timedelta(days=3)
    index = 0
    while at < NOW:
        cpu = 10.0 if at.minute < 30 else 30.0  # hourly average 20, maximum 30
        samples.append(MetricSample(worker.id, at, "running", cpu, 50.0, index % 3))
        at += timedelta(minutes=5)
        index += 1
    await repository.save_collection_async([], samples)
    return worker


async def _count(repository: CMLWorkerRepository, table) -> int:  # type: ignore[no-untyped-def]
    async with repository.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_roll_up_prune_and_resolution(repository: CMLWorkerRepository) -> None:
    worker = await _seed(repository)
    history = HistoryStore(
        repository.engine, raw_retention=timedelta(hours=48), retention=timedelta(days=2, hours=12)
    )
    raw_before = await _count(repository, worker_metrics)
    assert raw_before == 3 * 24 * 12

    rolled = await history.roll_up(NOW)
    assert rolled == 3 * 24  # every complete hour, none of the current one
    async with repository.engine.connect() as conn:
        rows = (
            await conn.execute(select(worker_metrics_hourly).order_by(worker_metrics_hourly.c.hour))
        ).all()
    assert rows[0].samples == 6  # the seed began at half past: a partial hour
    row = rows[1]
    assert (row.samples, row.cpu_avg, row.cpu_max, row.memory_avg, row.memory_max) == (
        12,
        20.0,
        30.0,
        50.0,
        50.0,
    )
    assert await history.roll_up(NOW) == 3  # idempotent: only the last hours are recomputed
    assert await _count(repository, worker_metrics_hourly) == 3 * 24

    await history.ensure_partitions(NOW)
    pruned = await history.prune(NOW)
    cutoff = NOW - timedelta(hours=48)
    if repository.engine.dialect.name == "postgresql":
        # Whole days go: the samples of the cutoff's day stay until that day has passed.
        start_of_day = cutoff.replace(hour=0, minute=0)
        kept = 48 * 12 + int((cutoff - start_of_day) / timedelta(minutes=5))
    else:
        kept = 48 * 12
    assert pruned.raw_rows == raw_before - kept
    assert pruned.hourly_rows == 13  # hours before NOW - 60 h: 12:00 three days ago … 00:00 two days ago
    assert await _count(repository, worker_metrics) == kept

    step, source, points = await history.series(worker.id, NOW - timedelta(hours=1), NOW, None, 1000)
    assert (step, source, len(points)) == (0, "raw", 12)
    step, source, points = await history.series(worker.id, NOW - timedelta(hours=24), NOW, None, 1000)
    assert (step, source) == (300, "raw") and len(points) == 24 * 12
    step, source, points = await history.series(worker.id, NOW - timedelta(days=7), NOW, None, 1000)
    # The current hour is not rolled up yet: its raw samples (all at 10 %) fill it in.
    assert (step, source) == (3600, "hourly+raw")
    assert len(points) == 72 - 13 + 1 and points[0].cpu_utilization == 20.0 and points[0].cpu_max == 30.0
    assert points[-1].timestamp == NOW.replace(minute=0) and points[-1].cpu_utilization == 10.0
    step, source, points = await history.series(worker.id, NOW - timedelta(hours=24), NOW, 3600 * 6, 1000)
    assert (step, source) == (21600, "hourly+raw") and all(p.cpu_max == 30.0 for p in points[:-1])
    assert len({p.timestamp for p in points}) == len(points)  # one point per 6 hours, none twice


async def test_a_week_falls_back_to_raw_samples_before_any_roll_up(repository: CMLWorkerRepository) -> None:
    worker = await _seed(repository)
    history = HistoryStore(repository.engine, raw_retention=timedelta(hours=48), retention=timedelta(days=30))
    step, source, points = await history.series(worker.id, NOW - timedelta(days=7), NOW, None, 1000)
    assert (step, source) == (3600, "hourly+raw")
    assert len(points) == 48 + 1  # every hour the raw retention still holds, the current one too
    assert points[1].cpu_utilization == 20.0 and points[1].cpu_max == 30.0  # the first hour is half kept


async def test_history_endpoint(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory(worker_monitoring_enabled=False)
    repository = api.runtime.repository
    worker = await _seed(repository)
    await api.runtime.history.roll_up(NOW)
    url = f"/api/workers/{worker.id}/metrics"
    body = (
        await api.client.get(url, params={"since": _iso(NOW - timedelta(hours=1)), "until": _iso(NOW)})
    ).json()
    assert body["step"] == 0 and body["source"] == "raw" and len(body["items"]) == 12
    assert set(body["items"][0]) >= {
        "timestamp",
        "status",
        "cpu_utilization",
        "memory_utilization",
        "active_labs_count",
    }
    week = (
        await api.client.get(url, params={"since": _iso(NOW - timedelta(days=7)), "until": _iso(NOW)})
    ).json()
    # The service's own maintenance may have rolled the last hour up meanwhile (real clock).
    assert (
        week["source"] in ("hourly", "hourly+raw")
        and week["step"] == 3600
        and week["items"][0]["cpu_max"] == 30.0
    )
    every = await api.client.get(
        url, params={"since": _iso(NOW - timedelta(hours=12, minutes=30)), "until": _iso(NOW), "step": 0}
    )
    assert every.json()["step"] == 0 and len(every.json()["items"]) == 150
    bad = await api.client.get(url, params={"since": _iso(NOW), "until": _iso(NOW - timedelta(hours=1))})
    assert bad.status_code == 422
    assert (await api.client.get(url, params={"step": -5})).status_code == 422


async def _partition_counts(repository: CMLWorkerRepository) -> dict[str, int]:
    async with repository.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tableoid::regclass::text AS part, count(*) FROM worker_metrics GROUP BY 1")
        )
        return {part: count for part, count in rows.all()}


async def test_postgresql_history_is_partitioned_by_day(
    postgresql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Samples land in their day's partition; one whose day has none waits in the default
    partition and moves when the day's partition is made; retention drops whole days."""
    engine = create_engine(postgresql_url)
    try:
        await migrate(engine)
        repository = CMLWorkerRepository(engine)
        worker = await _seed(repository)
        stray = datetime(2001, 1, 1, 12, tzinfo=UTC)
        await repository.save_collection_async([], [MetricSample(worker.id, stray, "running", 1.0, 1.0, 0)])
        history = HistoryStore(engine, raw_retention=timedelta(days=4), retention=timedelta(days=30))
        created = await history.ensure_partitions(NOW)
        assert created >= 3  # the seeded days before today (today's was made by the migration)
        counts = await _partition_counts(repository)
        assert counts[partitions.DEFAULT] == 1  # only the stray sample: no partition for 2001
        assert sum(counts.values()) == 3 * 24 * 12 + 1
        for day in {(NOW - timedelta(days=d)).date() for d in range(4)}:
            at = [NOW - timedelta(days=3) + timedelta(minutes=5 * i) for i in range(3 * 24 * 12)]
            assert counts.get(partitions.partition_name(day), 0) == sum(1 for t in at if t.date() == day)
        assert await history.ensure_partitions(NOW) == 0  # idempotent

        # A later partition for the stray day takes its row out of the default partition.
        async with engine.begin() as conn:
            await conn.run_sync(partitions.ensure, stray.date(), stray.date())
        counts = await _partition_counts(repository)
        assert partitions.DEFAULT not in counts and counts[partitions.partition_name(stray.date())] == 1

        # A long read holds the table: retention gives up within its lock timeout (no queue of
        # inserts behind a waiting DROP) and drops nothing; the next run does it.
        history.lock_timeout = 0.2
        async with engine.connect() as reader:
            await reader.execute(text("SELECT count(*) FROM worker_metrics"))  # holds its lock
            with caplog.at_level(logging.WARNING):
                waited = await history.prune(NOW + timedelta(days=365))
            assert (waited.raw_partitions, waited.raw_rows) == (0, 0)
            assert "could not drop partitions within" in caplog.text
            await reader.rollback()
        assert await _count(repository, worker_metrics) == 3 * 24 * 12 + 1

        # A year later every day is past retention: all dropped, nothing deleted row by row.
        pruned = await history.prune(NOW + timedelta(days=365))
        assert pruned.raw_rows == 0 and pruned.raw_partitions >= 5
        assert await _count(repository, worker_metrics) == 0
        async with engine.connect() as conn:
            days = await conn.run_sync(partitions.existing_days)
        assert days == []
    finally:
        await engine.dispose()


async def test_postgresql_partitioning_migration_keeps_stored_samples(postgresql_url: str) -> None:
    """Upgrading a database with plain history keeps every sample, with its id, in its day."""

    engine = create_engine(postgresql_url)
    try:
        await migrate(engine, "0007")
        repository = CMLWorkerRepository(engine)
        # The worker row as a 0007 database holds it: only the columns it has (later
        # migrations add worker columns the repository of today writes).
        worker = _worker()
        async with engine.begin() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("workers")}
            )
            record = {k: v for k, v in worker.to_record().items() if k in columns}
            await conn.execute(insert(workers_table).values(**record))
        worker = await _seed(repository, worker)
        async with engine.connect() as conn:
            before = (await conn.execute(text("SELECT id, timestamp FROM worker_metrics ORDER BY id"))).all()
        await migrate(engine)
        async with engine.connect() as conn:
            after = (await conn.execute(text("SELECT id, timestamp FROM worker_metrics ORDER BY id"))).all()
            days = await conn.run_sync(partitions.existing_days)
        assert after == before and len(after) == 3 * 24 * 12
        counts = await _partition_counts(repository)
        assert partitions.DEFAULT not in counts  # every seeded day got its partition
        assert min(days) == (NOW - timedelta(days=3)).date()
        # New samples still get fresh ids from the sequence the old table used.
        await repository.save_collection_async([], [MetricSample(worker.id, NOW, "running", 1.0, 1.0, 0)])
        async with engine.connect() as conn:
            newest = (await conn.execute(text("SELECT max(id) FROM worker_metrics"))).scalar_one()
        assert newest > before[-1].id
    finally:
        await engine.dispose()
