"""Per-dialect job fields and ids: jobs.labels, and job_aliases (a dialect's id for a job).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing jobs get no labels; the server default fills them in.
    op.add_column("jobs", sa.Column("labels", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
    op.create_table(
        "job_aliases",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("dialect", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_aliases_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_job_aliases_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("org_id", "dialect", "external_id", name=op.f("pk_job_aliases")),
    )
    op.create_index(op.f("ix_job_aliases_job_id"), "job_aliases", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_job_aliases_job_id"), table_name="job_aliases")
    op.drop_table("job_aliases")
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding jobs would
    # drop the old table, and with it, by ON DELETE CASCADE, every job's events, logs and checkpoints.
    op.drop_column("jobs", "labels")
