"""Repair the raw history's (worker, time) index on databases migrated by the first 0008.

Migration 0008 was edited after it had landed: its first version made `ix_worker_metrics_worker_ts`
a plain (worker_id, timestamp) index, the edit made it carry the charted columns (INCLUDE), so
that a chart is read from the index alone. A database upgraded before the edit reports 0008 but
has the plain index. This revision replaces a plain index by the covering one, creates it when it
is missing, and leaves a covering one alone, so it is safe on every database at 0008. Only on
PostgreSQL and only where the history is partitioned (what 0008 made); SQLite has nothing to do.

Creating the index reads every partition once, in the migration's transaction (writes to the
history wait meanwhile): minutes at most for the retention's days of a large fleet.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEX = "ix_worker_metrics_worker_ts"
CHARTED = "status, cpu_utilization, memory_utilization, active_labs_count, running_nodes, disk_used_percent"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    partitioned = conn.execute(
        sa.text(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname = 'worker_metrics' AND c.relnamespace = current_schema()::regnamespace"
        )
    ).first()
    if partitioned is None:
        return
    definition = conn.execute(
        sa.text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'worker_metrics' AND indexname = :name"
        ),
        {"name": INDEX},
    ).scalar_one_or_none()
    if definition is not None and "INCLUDE" in definition.upper():
        return  # migrated by the edited 0008, or repaired already
    if definition is not None:
        op.execute(f"DROP INDEX {INDEX}")  # the plain one: its partitions' indexes go with it
    op.execute(f"CREATE INDEX {INDEX} ON worker_metrics (worker_id, timestamp) INCLUDE ({CHARTED})")


def downgrade() -> None:
    """Nothing to undo: the covering index is what 0008 makes today."""
