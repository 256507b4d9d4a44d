"""Migrations: landed revisions are never edited, and 0009 repairs what the first 0008 made."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.storage.database import MIGRATIONS, create_engine, migrate

# sha256 of each landed migration file. A landed migration is never edited (a database that
# ran the old text would silently differ from one that ran the new): write a new revision.
LANDED = {
    "0001_initial.py": "40cd54af03ccc62f54564547fae2f35404f20d65dfb91f62e757378e577769c3",
    "0002_alerting.py": "74ccf719f5866b8fc61cea3aa689e385ac35f43666e3ea4a40cd35e1804e5e03",
    "0003_hourly_history.py": "63e119903e73d8c76362d0b5c755f2a5a567ea36f6710c611fc22a476e079866",
    "0004_leases.py": "b1f2e34d6c3f13523ce91417553206273505fdc15fe0c6ef80383c55115452af",
    "0005_notification_order.py": "f2aea31905d83a54f8f19c210e475b95b342a8f30c35b1f76f46c0c6bfd90f8d",
    "0006_cml_depth.py": "5a7f38f8ce2c7a0bd6de62505168f53ffee6c2976221095c254bb3445e29fa43",
    "0007_actions.py": "1bb758d00cac040be5306fa71a27f3f909598d41d8d0c3d0ea8d327bcfee976e",
    "0008_partitioned_history.py": "3f1807e49e5a1b921b0fa7c6a398b8cec17a000950bb1cb9e429cefd1935e4aa",
    "0009_repair_history_index.py": "ae6a8c2f229ac3fbc3e5d31cf823dc70af1df95c516921601746fc5b34c0b79d",
}


def test_landed_migrations_are_never_edited() -> None:
    versions = MIGRATIONS / "versions"
    changed = [
        name
        for name, digest in LANDED.items()
        if hashlib.sha256((versions / name).read_bytes()).hexdigest() != digest
    ]
    assert not changed, f"landed migrations changed: {changed}; write a new revision instead of editing one"


async def _index_definition(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'worker_metrics' "
                    "AND indexname = 'ix_worker_metrics_worker_ts'"
                )
            )
        ).scalar_one_or_none()


async def _partition_indexes_covering(engine: AsyncEngine) -> list[bool]:
    """For each day partition, whether its (worker, time) index carries the charted columns."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT i.indexdef FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhrelid "
                    "JOIN pg_indexes i ON i.tablename = p.relname "
                    "WHERE h.inhparent = 'worker_metrics'::regclass AND i.indexdef LIKE '%(worker_id%'"
                )
            )
        ).scalars()
        return ["INCLUDE" in row for row in rows]


async def _back_to_0008(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0008'"))


async def test_0009_repairs_a_database_migrated_by_the_first_0008(postgresql_url: str) -> None:
    engine = create_engine(postgresql_url)
    try:
        await migrate(engine, "0008")
        # The state the first 0008 left: a plain (worker_id, timestamp) index.
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_worker_metrics_worker_ts"))
            await conn.execute(
                text("CREATE INDEX ix_worker_metrics_worker_ts ON worker_metrics (worker_id, timestamp)")
            )
        assert "INCLUDE" not in (await _index_definition(engine) or "INCLUDE")
        await migrate(engine, "0009")
        repaired = await _index_definition(engine)
        assert repaired is not None and "INCLUDE (status, cpu_utilization" in repaired
        covering = await _partition_indexes_covering(engine)
        assert covering and all(covering)
        # Idempotent: run again over a repaired database, it changes nothing.
        await _back_to_0008(engine)
        await migrate(engine, "0009")
        assert await _index_definition(engine) == repaired
        # Missing altogether: created.
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_worker_metrics_worker_ts"))
        await _back_to_0008(engine)
        await migrate(engine, "0009")
        assert await _index_definition(engine) == repaired
    finally:
        await engine.dispose()


async def test_0009_is_a_no_op_on_sqlite(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        await migrate(engine, "0009")
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
            indexes = (
                await conn.execute(text("SELECT name FROM sqlite_master WHERE tbl_name = 'worker_metrics'"))
            ).scalars()
            names = set(indexes)
        assert version == "0009" and "ix_worker_metrics_worker_ts" in names
    finally:
        await engine.dispose()


async def test_0009_leaves_a_plain_history_table_alone(postgresql_url: str) -> None:
    """Only the partitioned table 0008 made is repaired; a plain one (0008 never ran) is not touched."""
    engine = create_engine(postgresql_url)
    try:
        await migrate(engine, "0007")
        before = await _index_definition(engine)
        await _back_to_0008(engine)  # reported as 0008 while the table is still the plain one
        await migrate(engine, "0009")
        assert await _index_definition(engine) == before and "INCLUDE" not in (before or "INCLUDE")
    finally:
        await engine.dispose()
