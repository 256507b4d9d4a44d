"""Raw metric samples partitioned by day on PostgreSQL, so retention drops whole days instead
of deleting millions of rows. SQLite keeps its plain table (nothing to do there).

The table is rebuilt: the old one is renamed aside, the partitioned one is created with the same
columns (the `id` sequence carries over; the primary key goes, since a partitioned table's key
would have to include the timestamp and nothing looks a sample up by id), a partition is made
for every day the old rows cover and the days around today, the rows are copied and the old
table dropped, all in the migration's one transaction. The (worker, time) index carries the
charted columns, so a worker's chart is read from the index alone.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from cml_monitor.storage import partitions

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (
    "id, worker_id, timestamp, status, cpu_utilization, memory_utilization, active_labs_count, "
    "running_nodes, disk_used_percent"
)
CHARTED = "status, cpu_utilization, memory_utilization, active_labs_count, running_nodes, disk_used_percent"
AHEAD = timedelta(days=3)


def _set_aside(suffix: str) -> str:
    """Rename the table and its indexes out of the way of the new one; returns the new name."""
    old = f"worker_metrics_{suffix}"
    op.execute(f"ALTER TABLE worker_metrics RENAME TO {old}")
    op.execute(f"ALTER INDEX ix_worker_metrics_worker_ts RENAME TO ix_{old}_worker_ts")
    op.execute(f"ALTER INDEX ix_worker_metrics_ts RENAME TO ix_{old}_ts")
    return old


def _take_over(old: str) -> None:
    """The new table takes the id sequence and every row of the old one, which goes."""
    op.execute("ALTER SEQUENCE worker_metrics_id_seq OWNED BY worker_metrics.id")
    op.execute(f"INSERT INTO worker_metrics ({COLUMNS}) SELECT {COLUMNS} FROM {old}")
    op.execute(f"DROP TABLE {old}")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    old = _set_aside("plain")
    op.execute(
        """
        CREATE TABLE worker_metrics (
            id BIGINT NOT NULL DEFAULT nextval('worker_metrics_id_seq'),
            worker_id VARCHAR(36) NOT NULL,
            timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
            status VARCHAR(16) NOT NULL,
            cpu_utilization DOUBLE PRECISION,
            memory_utilization DOUBLE PRECISION,
            active_labs_count INTEGER,
            running_nodes INTEGER,
            disk_used_percent DOUBLE PRECISION
        ) PARTITION BY RANGE (timestamp)
        """
    )
    # A chart reads one worker's samples, which a cycle writes among every other worker's: one
    # heap page per sample. Carrying the charted columns in the index lets PostgreSQL answer from
    # the index alone (index-only scan), where one worker's samples sit side by side.
    op.execute(
        "CREATE INDEX ix_worker_metrics_worker_ts ON worker_metrics (worker_id, timestamp) "
        f"INCLUDE ({CHARTED})"
    )
    op.execute("CREATE INDEX ix_worker_metrics_ts ON worker_metrics (timestamp)")
    op.execute(f"CREATE TABLE {partitions.DEFAULT} PARTITION OF worker_metrics DEFAULT")
    today = datetime.now(UTC).date()
    oldest, newest = conn.execute(sa.text(f"SELECT min(timestamp), max(timestamp) FROM {old}")).one()
    first = min(oldest.astimezone(UTC).date(), today) if oldest is not None else today
    last = max(newest.astimezone(UTC).date(), today + AHEAD) if newest is not None else today + AHEAD
    partitions.ensure(conn, first, last)
    _take_over(old)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    old = _set_aside("partitioned")
    op.execute(f"CREATE TABLE worker_metrics (LIKE {old} INCLUDING DEFAULTS, PRIMARY KEY (id))")
    op.execute("CREATE INDEX ix_worker_metrics_worker_ts ON worker_metrics (worker_id, timestamp)")
    op.execute("CREATE INDEX ix_worker_metrics_ts ON worker_metrics (timestamp)")
    _take_over(old)
