"""A job's revision: a counter bumped by every write that changes what a read of the job, its metrics
or its logs shows (tuneyard.store.changes), which those reads answer as their ETag.

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing jobs start at 0 alike: no client holds an ETag from before the column existed.
    op.add_column("jobs", sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding jobs would drop the old table
    # and with it, by ON DELETE CASCADE, every job's events, logs and checkpoints (see 0002).
    op.drop_column("jobs", "revision")
