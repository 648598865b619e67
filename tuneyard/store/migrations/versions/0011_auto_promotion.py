"""Auto-training's promotion: a run's model activated when its evaluation beats the task's active one.

auto_training_configs.activate_if_better turns it on (off by default); each run records the
evaluate job it submitted (evaluation_id) and what was decided (promotion).

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auto_training_configs") as batch:
        batch.add_column(sa.Column("activate_if_better", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("auto_training_runs") as batch:
        batch.add_column(sa.Column("evaluation_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("promotion", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auto_training_runs") as batch:
        batch.drop_column("promotion")
        batch.drop_column("evaluation_id")
    with op.batch_alter_table("auto_training_configs") as batch:
        batch.drop_column("activate_if_better")
