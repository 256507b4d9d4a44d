"""Idle workers and actions: the worker's auto-pause switch, idle state and impaired streak,
and the audit trail of every stop, start and reboot (one pending action per worker at most).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cml_monitor.storage.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING = "result = 'pending'"


def upgrade() -> None:
    op.add_column("workers", sa.Column("auto_pause", sa.Boolean, nullable=False, server_default=sa.true()))
    op.add_column("workers", sa.Column("idle", sa.JSON, nullable=True))
    op.add_column("workers", sa.Column("impaired_samples", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "actions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("worker_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(1024), nullable=True),
    )
    op.create_index("ix_actions_worker", "actions", ["worker_id", "requested_at"])
    op.create_index("ix_actions_requested", "actions", ["requested_at"])
    op.create_index(
        "ux_actions_pending",
        "actions",
        ["worker_id"],
        unique=True,
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_table("actions")
    op.drop_column("workers", "impaired_samples")
    op.drop_column("workers", "idle")
    op.drop_column("workers", "auto_pause")
