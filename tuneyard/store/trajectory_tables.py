"""Tables of agent trajectories, the datasets built from them, and auto-training (migration 0007).

Kept beside tables.py rather than in it so the trajectory feature reads as one unit; the package
imports this module, so `Base.metadata` always holds these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from tuneyard.store.ids import utcnow
from tuneyard.store.tables import ID, Base

NO_TASK = ""
"""The task key of trajectories that name none (a primary key column cannot be NULL)."""


def _org_fk() -> Mapped[str]:
    return mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), index=True)


class Trajectory(Base):
    """One agent run with its LLM calls, as ingested. `seq` orders ingestion: auto-training counts
    what arrived past the last firing's mark by it."""

    __tablename__ = "trajectories"
    __table_args__ = (
        UniqueConstraint("org_id", "id"),
        Index("ix_trajectories_org_task_seq", "org_id", "task", "seq"),
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(String(128))  # the caller's (a UUID unless they gave one)
    source: Mapped[str] = mapped_column(String(128))  # spec.text.LABEL_MAX: a request cannot overflow it
    status: Mapped[str] = mapped_column(String(16))  # completed | failed | running
    task: Mapped[str] = mapped_column(String(128), default=NO_TASK)
    start_time: Mapped[int] = mapped_column(BigInteger)  # epoch ms, as the agent reported it
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    llm_call_count: Mapped[int]
    models: Mapped[list[Any]]  # the distinct models its calls used, for the build's `model` filter
    body: Mapped[dict[str, Any]]  # llmCalls, providerAccesses, metadata: as given
    content_sha256: Mapped[str] = mapped_column(String(64))  # of the canonical JSON: a retry is recognised
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetBuild(Base):
    """How a dataset was built from trajectories: its filters, lineage and counts."""

    __tablename__ = "dataset_builds"
    dataset_id: Mapped[str] = mapped_column(ID, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[str] = _org_fk()
    filters: Mapped[dict[str, Any]]
    trajectory_ids: Mapped[list[Any]]
    trajectory_count: Mapped[int]
    example_count: Mapped[int]
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AutoTrainingConfig(Base):
    """An organization's auto-training settings and the job it submits. `key_id` is the key that
    set it: jobs are submitted as that key, so the job table's idempotency (per key) holds for them."""

    __tablename__ = "auto_training_configs"
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    threshold: Mapped[int]
    cooldown_hours: Mapped[float] = mapped_column(Float)
    job_template: Mapped[dict[str, Any]]
    key_id: Mapped[str | None] = mapped_column(ID, ForeignKey("api_keys.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # evaluate each run's model and activate it when it beats the task's active one (services/auto_promotion.py)
    activate_if_better: Mapped[bool] = mapped_column(default=False, server_default=false())


class AutoTrainingTask(Base):
    """Where a task's counting stands: `window` firings so far, the last one consuming every
    trajectory up to `through_seq`. Firing is one guarded UPDATE of this row (store/auto_training.py)."""

    __tablename__ = "auto_training_tasks"
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    task: Mapped[str] = mapped_column(String(128), primary_key=True)
    window: Mapped[int] = mapped_column(default=0)
    through_seq: Mapped[int] = mapped_column(default=0)
    last_fired_at: Mapped[datetime | None]


class AutoTrainingRun(Base):
    """One firing: why (`reason`), then the dataset and job it made. `idempotency_key` is task + window,
    unique per organization, so no window fires twice whatever processes race or restart."""

    __tablename__ = "auto_training_runs"
    __table_args__ = (UniqueConstraint("org_id", "idempotency_key"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = _org_fk()
    task: Mapped[str] = mapped_column(String(128))
    window: Mapped[int]
    idempotency_key: Mapped[str] = mapped_column(String(160))
    through_seq: Mapped[int]
    reason: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # fired | submitted | failed
    dataset_id: Mapped[str | None] = mapped_column(ID)
    job_id: Mapped[str | None] = mapped_column(ID)
    error: Mapped[dict[str, Any] | None]
    evaluation_id: Mapped[str | None] = mapped_column(ID)  # the evaluate job of its model (activate_if_better)
    promotion: Mapped[dict[str, Any] | None]  # decided once: activated | kept | skipped, with the figures
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)  # who completes it: see recover_stale
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
