"""Where a worker's CPU and memory came from in its last collection: its controller's
`system_stats` (`controller`), CloudWatch (`cloudwatch`), or nowhere (null).

Revision ID: 0012
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("metrics_source", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "metrics_source")
