"""A job's required device: document 003's `backend: cpu|cuda` routes the job to a worker of that
device, so a claim filters on it in SQL beside the memory estimate.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: jobs queued before require no device and any worker may take them.
    op.add_column("jobs", sa.Column("required_device", sa.String(length=8), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding jobs would drop the old table
    # and with it, by ON DELETE CASCADE, every job's events, logs and checkpoints (see 0002).
    op.drop_column("jobs", "required_device")
