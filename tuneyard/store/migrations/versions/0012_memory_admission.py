"""Memory-aware admission: the memory a worker declares (and its device), and the peak memory a
job's estimate needs, so a claim takes only what fits.

Revision ID: 0012
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: jobs queued before keep NULL and any worker may take them, and so may a
    # worker registered before (its NULL memory is read as "unknown", never as zero).
    op.add_column("jobs", sa.Column("memory_estimate_bytes", sa.BigInteger(), nullable=True))
    op.add_column("workers", sa.Column("memory_bytes", sa.BigInteger(), nullable=True))
    op.add_column("workers", sa.Column("device", sa.String(length=8), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite 3.35+), not batch rebuilds: rebuilding jobs would drop the old table
    # and with it, by ON DELETE CASCADE, every job's events, logs and checkpoints (see 0002).
    op.drop_column("workers", "device")
    op.drop_column("workers", "memory_bytes")
    op.drop_column("jobs", "memory_estimate_bytes")
