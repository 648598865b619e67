"""A UUID beside the native id of every job, checkpoint, dataset, file, base model and trained model,
for the dialects whose documents say UUID; existing rows get one here.

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("files", "datasets", "base_models", "jobs", "checkpoints", "trained_models")


def upgrade() -> None:
    connection = op.get_bind()
    for table in TABLES:
        # Nullable: SQLite adds a NOT NULL column only with a constant default, and rebuilding these
        # tables would run their ON DELETE CASCADEs. Every row is given one below; the store gives
        # every new row one at insert (tables._uuid).
        op.add_column(table, sa.Column("uuid", sa.String(length=36), nullable=True))
        rows = sa.table(table, sa.column("id", sa.String()), sa.column("uuid", sa.String()))
        ids = connection.execute(sa.select(rows.c.id)).scalars().all()
        for row_id in ids:
            connection.execute(sa.update(rows).where(rows.c.id == row_id).values(uuid=str(uuid.uuid4())))
        op.create_index(op.f(f"ix_{table}_uuid"), table, ["uuid"], unique=True)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_index(op.f(f"ix_{table}_uuid"), table_name=table)
        # A plain DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding jobs would drop the old
        # table and with it, by ON DELETE CASCADE, every job's events, logs and checkpoints (see 0002).
        op.drop_column(table, "uuid")
