"""Notification order: a row's place within the batch that created it, and a queue index.

Messages about one worker to one receiver are delivered oldest first, one at a time; rows
written in one transaction share `created_at`, so `ordinal` keeps the order they happened in.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("ordinal", sa.Integer, nullable=False, server_default="0"))
    op.create_index(
        "ix_notifications_queue", "notifications", ["channel", "target", "worker_id", "state", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_queue", "notifications")
    op.drop_column("notifications", "ordinal")
