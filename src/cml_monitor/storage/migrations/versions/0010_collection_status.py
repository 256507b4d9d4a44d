"""Never silent: each region's last collection, shared by every replica, and fleet-level alerts.

`region_collections` is written by the replica that collects a region, after every run, and read
by every replica (API replicas included) to say how fresh the fleet's figures are. Alerts gain
`region` and may have no worker: `collection_failing` is about a region, not a worker.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cml_monitor.storage.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "region_collections",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("interval_seconds", sa.Integer, nullable=False),
        sa.Column("last_attempt_at", UTCDateTime, nullable=False),
        sa.Column("last_success_at", UTCDateTime, nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.Column("holder", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("worker_id", existing_type=sa.String(36), nullable=True)
        batch.add_column(sa.Column("region", sa.String(32), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM alerts WHERE worker_id IS NULL")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("region")
        batch.alter_column("worker_id", existing_type=sa.String(36), nullable=False)
    op.drop_table("region_collections")
