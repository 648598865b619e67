"""Exports of trained models: format, status, the sealed folder's manifest or the error's figures.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_exports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("model_id", sa.String(length=40), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("quantization", sa.String(length=32), nullable=True),
        sa.Column("variant", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["trained_models.id"],
                                name=op.f("fk_model_exports_model_id_trained_models"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_model_exports_org_id_organizations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_exports")),
    )
    op.create_index(op.f("ix_model_exports_model_id"), "model_exports", ["model_id"], unique=False)
    op.create_index(op.f("ix_model_exports_org_id"), "model_exports", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_model_exports_org_id"), table_name="model_exports")
    op.drop_index(op.f("ix_model_exports_model_id"), table_name="model_exports")
    op.drop_table("model_exports")
