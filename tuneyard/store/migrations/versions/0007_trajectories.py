"""Agent trajectories, the datasets built from them (lineage, counts), and auto-training (per-org
config, per-task counting, one row per firing).

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(length=40)


def _org(table: str) -> list[Any]:
    return [sa.Column("org_id", ID, nullable=False),
            sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                    name=op.f(f"fk_{table}_org_id_organizations"), ondelete="CASCADE")]


def upgrade() -> None:
    op.create_table(
        "trajectories",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        *_org("trajectories"),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("task", sa.String(length=128), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("llm_call_count", sa.Integer(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_trajectories")),
        sa.UniqueConstraint("org_id", "id", name=op.f("uq_trajectories_org_id_id")),
    )
    op.create_index(op.f("ix_trajectories_org_id"), "trajectories", ["org_id"], unique=False)
    op.create_index("ix_trajectories_org_task_seq", "trajectories", ["org_id", "task", "seq"], unique=False)
    op.create_table(
        "dataset_builds",
        sa.Column("dataset_id", ID, nullable=False),
        *_org("dataset_builds"),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("trajectory_ids", sa.JSON(), nullable=False),
        sa.Column("trajectory_count", sa.Integer(), nullable=False),
        sa.Column("example_count", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_builds_dataset_id_datasets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_dataset_builds")),
    )
    op.create_index(op.f("ix_dataset_builds_org_id"), "dataset_builds", ["org_id"], unique=False)
    op.create_index(op.f("ix_dataset_builds_content_sha256"), "dataset_builds", ["content_sha256"], unique=False)
    op.create_table(
        "auto_training_configs",
        *_org("auto_training_configs"),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("cooldown_hours", sa.Float(), nullable=False),
        sa.Column("job_template", sa.JSON(), nullable=False),
        sa.Column("key_id", ID, nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_auto_training_configs_key_id_api_keys"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_auto_training_configs")),
    )
    op.create_table(
        "auto_training_tasks",
        *_org("auto_training_tasks"),
        sa.Column("task", sa.String(length=128), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("through_seq", sa.Integer(), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "task", name=op.f("pk_auto_training_tasks")),
    )
    op.create_table(
        "auto_training_runs",
        sa.Column("id", ID, nullable=False),
        *_org("auto_training_runs"),
        sa.Column("task", sa.String(length=128), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=160), nullable=False),
        sa.Column("through_seq", sa.Integer(), nullable=False),
        sa.Column("reason", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dataset_id", ID, nullable=True),
        sa.Column("job_id", ID, nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auto_training_runs")),
        sa.UniqueConstraint("org_id", "idempotency_key", name=op.f("uq_auto_training_runs_org_id_idempotency_key")),
    )
    op.create_index(op.f("ix_auto_training_runs_org_id"), "auto_training_runs", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_auto_training_runs_org_id"), table_name="auto_training_runs")
    op.drop_table("auto_training_runs")
    op.drop_table("auto_training_tasks")
    op.drop_table("auto_training_configs")
    op.drop_index(op.f("ix_dataset_builds_content_sha256"), table_name="dataset_builds")
    op.drop_index(op.f("ix_dataset_builds_org_id"), table_name="dataset_builds")
    op.drop_table("dataset_builds")
    op.drop_index("ix_trajectories_org_task_seq", table_name="trajectories")
    op.drop_index(op.f("ix_trajectories_org_id"), table_name="trajectories")
    op.drop_table("trajectories")
