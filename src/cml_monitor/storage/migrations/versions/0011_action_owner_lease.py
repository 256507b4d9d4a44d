"""Actions across replicas: a pending action's owner (the replica acting on it) and its lease.

A replica that starts settles only the pending actions whose owner's lease has run out; rows
written before this revision have neither and are settled as before.

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cml_monitor.storage.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("actions", sa.Column("owner", sa.String(128), nullable=True))
    op.add_column("actions", sa.Column("lease_until", UTCDateTime, nullable=True))


def downgrade() -> None:
    op.drop_column("actions", "lease_until")
    op.drop_column("actions", "owner")
