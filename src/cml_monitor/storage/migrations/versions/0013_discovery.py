"""Discovery and acknowledgements: when a worker was discovered by its tags (so that only the
workers discovery added are forgotten after termination), and who acknowledged an alert.

Revision ID: 0013
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cml_monitor.storage.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("discovered_at", UTCDateTime, nullable=True))
    op.add_column("alerts", sa.Column("acknowledged_by", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("acknowledged_by")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("discovered_at")
