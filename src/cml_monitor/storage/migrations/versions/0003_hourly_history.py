"""Hourly averages and maxima of the metric history, kept after the raw samples are pruned.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cml_monitor.storage.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_metrics_hourly",
        sa.Column("worker_id", sa.String(36), primary_key=True),
        sa.Column("hour", UTCDateTime, primary_key=True),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("cpu_avg", sa.Float, nullable=True),
        sa.Column("cpu_max", sa.Float, nullable=True),
        sa.Column("memory_avg", sa.Float, nullable=True),
        sa.Column("memory_max", sa.Float, nullable=True),
        sa.Column("labs_avg", sa.Float, nullable=True),
        sa.Column("labs_max", sa.Integer, nullable=True),
    )
    op.create_index("ix_worker_metrics_hourly_hour", "worker_metrics_hourly", ["hour"])
    op.create_index("ix_worker_metrics_ts", "worker_metrics", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_worker_metrics_ts", "worker_metrics")
    op.drop_table("worker_metrics_hourly")
