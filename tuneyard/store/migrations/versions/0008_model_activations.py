"""Activated models: the trained models served for inference, their backend and extra name.

Revision ID: 0008
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_activations",
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("export_id", sa.String(40), nullable=True),
        sa.Column("provider_model", sa.String(255), nullable=True),
        sa.Column("activated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["trained_models.id"],
                                name=op.f("fk_model_activations_model_id_trained_models"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_model_activations_org_id_organizations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["export_id"], ["model_exports.id"],
                                name=op.f("fk_model_activations_export_id_model_exports"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_model_activations")),
        sa.UniqueConstraint("org_id", "provider_model", name=op.f("uq_model_activations_org_id_provider_model")),
    )
    op.create_index(op.f("ix_model_activations_org_id"), "model_activations", ["org_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_model_activations_org_id"), table_name="model_activations")
    op.drop_table("model_activations")
