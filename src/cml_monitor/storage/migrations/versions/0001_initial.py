"""Workers and their metric history.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cml_monitor.storage.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("aws_region", sa.String(32), nullable=False),
        sa.Column("aws_instance_id", sa.String(19), nullable=False, unique=True),
        sa.Column("cml_url", sa.String(2048), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ec2_instance_state", sa.String(16), nullable=True),
        sa.Column("ec2_system_status_check", sa.String(24), nullable=True),
        sa.Column("ec2_instance_status_check", sa.String(24), nullable=True),
        sa.Column("cpu_utilization", sa.Float, nullable=True),
        sa.Column("memory_utilization", sa.Float, nullable=True),
        sa.Column("active_labs_count", sa.Integer, nullable=False),
        sa.Column("last_activity_at", UTCDateTime, nullable=True),
        sa.Column("last_collected_at", UTCDateTime, nullable=True),
        sa.Column("status_changed_at", UTCDateTime, nullable=True),
        sa.Column("cpu_threshold", sa.Float, nullable=True),
        sa.Column("memory_threshold", sa.Float, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_workers_status", "workers", ["status"])
    op.create_index("ix_workers_aws_region", "workers", ["aws_region"])
    op.create_table(
        "worker_metrics",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("worker_id", sa.String(36), nullable=False),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cpu_utilization", sa.Float, nullable=True),
        sa.Column("memory_utilization", sa.Float, nullable=True),
        sa.Column("active_labs_count", sa.Integer, nullable=True),
    )
    op.create_index("ix_worker_metrics_worker_ts", "worker_metrics", ["worker_id", "timestamp"])


def downgrade() -> None:
    op.drop_table("worker_metrics")
    op.drop_table("workers")
