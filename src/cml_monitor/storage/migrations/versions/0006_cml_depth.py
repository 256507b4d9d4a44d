"""CML depth: the controller's status and EC2 scheduled events on the worker, node and disk
history, and a human detail on alerts (what an EC2 scheduled event is and when, say).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("cml", sa.JSON, nullable=True))
    op.add_column("workers", sa.Column("ec2_scheduled_events", sa.JSON, nullable=True))
    op.add_column("worker_metrics", sa.Column("running_nodes", sa.Integer, nullable=True))
    op.add_column("worker_metrics", sa.Column("disk_used_percent", sa.Float, nullable=True))
    op.add_column("alerts", sa.Column("detail", sa.String(1024), nullable=True))


def downgrade() -> None:
    op.drop_column("alerts", "detail")
    op.drop_column("worker_metrics", "disk_used_percent")
    op.drop_column("worker_metrics", "running_nodes")
    op.drop_column("workers", "ec2_scheduled_events")
    op.drop_column("workers", "cml")
