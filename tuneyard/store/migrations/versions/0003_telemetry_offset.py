"""Telemetry stored exactly once across crashes: the committed offset into a run's telemetry.jsonl
and the attempt writing past it (on jobs), and the attempt that wrote each metric point, log line
and checkpoint.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MARKED = ("metric_points", "log_lines", "checkpoints")


def upgrade() -> None:
    # No server default: a job from before keeps NULL, and its next attempt reads on from the end of
    # the file, as attempts did then (what an older attempt left unstored cannot be told apart).
    op.add_column("jobs", sa.Column("telemetry_offset", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("telemetry_attempt", sa.Integer(), nullable=True))
    for table in MARKED:
        op.add_column(table, sa.Column("attempt", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite 3.35+), not batch rebuilds: rebuilding jobs would drop the old table
    # and with it, by ON DELETE CASCADE, every job's events, logs and checkpoints (see 0002).
    for table in MARKED:
        op.drop_column(table, "attempt")
    op.drop_column("jobs", "telemetry_attempt")
    op.drop_column("jobs", "telemetry_offset")
