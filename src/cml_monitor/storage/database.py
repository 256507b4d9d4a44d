"""The database: one async engine for SQLite and PostgreSQL, and migrations applied at start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant will do: replicas starting together take turns at migrating PostgreSQL.
_MIGRATION_LOCK_ID = 0x434D4C4D


class StorageError(RuntimeError):
    """The database could not be reached or refused a write; the message says which."""


def create_engine(database_url: str, *, timeout: float = 30.0, **kwargs: Any) -> AsyncEngine:
    """The async engine; on SQLite, WAL and a busy timeout let the API read while a cycle writes."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # A PostgreSQL that hangs (stopped, or a network that drops packets) must cost a request
    # seconds and a clear 503, not the request for ever: bounded connect, statement and pool waits.
    kwargs.setdefault("pool_timeout", min(10.0, timeout))
    kwargs.setdefault("connect_args", {"timeout": min(5.0, timeout), "command_timeout": timeout})
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (or to `revision`, for tests and benchmarks of an
    upgrade); safe to call from several replicas at once."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)
    logger.info("Database schema is up to date (%s)", engine.url.render_as_string(hide_password=True))


async def drop_all(engine: AsyncEngine) -> None:
    """Remove every table of ours, migrations' bookkeeping and the job store included
    (tests and benchmarks start from an empty database)."""
    from .tables import metadata

    names = [table.name for table in reversed(metadata.sorted_tables)] + [
        "alembic_version",
        "apscheduler_jobs",
    ]
    cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
    async with engine.begin() as conn:
        for name in names:
            await conn.execute(text(f"DROP TABLE IF EXISTS {name}{cascade}"))
