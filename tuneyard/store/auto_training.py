"""Auto-training's store: per-organization config, per-task counting, and the guarded transition
that fires a task's window exactly once.

Firing is one write transaction: count the task's completed trajectories past `through_seq`; if
they reach the threshold and the cooldown has passed, `UPDATE auto_training_tasks ... WHERE window =
:seen AND (cooldown passed)`, check the row count, and insert the run row whose idempotency key is
task + window (unique per organization). A second process that read the same window finds the row
moved (PostgreSQL re-checks the WHERE after the first commits; SQLite serializes writers) and fires
nothing; a restart finds the window already consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from tuneyard.store.engine import Database
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.trajectory_tables import AutoTrainingConfig, AutoTrainingRun, AutoTrainingTask, Trajectory
from tuneyard.store.upsert import insert_ignoring_duplicates

RUN_STATUSES = ("fired", "submitted", "failed")
"""fired: the window is consumed, its dataset and job not yet both made; submitted: both made;
failed: making them failed for good (the error says why; the window stays consumed)."""


@dataclass(frozen=True)
class ConfigValues:
    enabled: bool
    threshold: int
    cooldown_hours: float
    job_template: dict[str, Any]
    activate_if_better: bool = False


def get_config(db: Database, org_id: str) -> AutoTrainingConfig | None:
    with db.read() as session:
        return session.get(AutoTrainingConfig, org_id)


def put_config(db: Database, org_id: str, values: ConfigValues, key_id: str | None) -> AutoTrainingConfig:
    with db.write() as session:
        row = session.get(AutoTrainingConfig, org_id)
        if row is None:
            row = AutoTrainingConfig(org_id=org_id)
            session.add(row)
        row.enabled, row.threshold = values.enabled, values.threshold
        row.cooldown_hours, row.job_template = values.cooldown_hours, values.job_template
        row.activate_if_better = values.activate_if_better
        row.key_id, row.updated_at = key_id, utcnow()
    return row


def try_fire(db: Database, org_id: str, task: str, threshold: int, cooldown_hours: float,
             now: datetime | None = None) -> AutoTrainingRun | None:
    """Fire the task's next window if it is due; the run row when this call fired it, else None."""
    now = now or utcnow()
    with db.write() as session:
        insert_ignoring_duplicates(session, AutoTrainingTask, [{"org_id": org_id, "task": task, "window": 0,
                                                                "through_seq": 0}], key=("org_id", "task"))
        state = session.execute(select(AutoTrainingTask.window, AutoTrainingTask.through_seq,
                                       AutoTrainingTask.last_fired_at)
                                .where(AutoTrainingTask.org_id == org_id, AutoTrainingTask.task == task)).one()
        counted = session.execute(
            select(func.count(), func.max(Trajectory.seq)).where(
                Trajectory.org_id == org_id, Trajectory.task == task, Trajectory.status == "completed",
                Trajectory.seq > state.through_seq)).one()
        cutoff = now - timedelta(hours=cooldown_hours)
        if counted[0] < threshold or (state.last_fired_at is not None and state.last_fired_at > cutoff):
            return None
        moved = session.execute(
            update(AutoTrainingTask)
            .where(AutoTrainingTask.org_id == org_id, AutoTrainingTask.task == task,
                   AutoTrainingTask.window == state.window,
                   or_(AutoTrainingTask.last_fired_at.is_(None), AutoTrainingTask.last_fired_at <= cutoff))
            .values(window=state.window + 1, through_seq=counted[1], last_fired_at=now)
            .execution_options(synchronize_session=False))
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return None  # another process fired this window first
        window = state.window + 1
        run = AutoTrainingRun(
            id=new_id("atr"), org_id=org_id, task=task, window=window, idempotency_key=f"{task}#{window}",
            through_seq=counted[1], status="fired", claimed_at=now, created_at=now,
            reason={"new_completed_trajectories": counted[0], "threshold": threshold,
                    "cooldown_hours": cooldown_hours,
                    "previous_firing": state.last_fired_at.isoformat() if state.last_fired_at else None})
        session.add(run)
    return run


def claim_stale(db: Database, org_id: str, older_than: timedelta, now: datetime | None = None) -> list[AutoTrainingRun]:
    """Runs left `fired` by a process that died before finishing them, claimed for this one.

    The claim is a guarded UPDATE on `claimed_at`, so two recovering processes take each run once;
    what they then make is idempotent anyway (see services/auto_training.py)."""
    now = now or utcnow()
    cutoff = now - older_than
    claimed = []
    with db.write() as session:
        stale = list(session.scalars(select(AutoTrainingRun).where(
            AutoTrainingRun.org_id == org_id, AutoTrainingRun.status == "fired", AutoTrainingRun.claimed_at <= cutoff)))
        for run in stale:
            moved = session.execute(
                update(AutoTrainingRun).where(AutoTrainingRun.id == run.id, AutoTrainingRun.status == "fired",
                                              AutoTrainingRun.claimed_at == run.claimed_at)
                .values(claimed_at=now).execution_options(synchronize_session=False))
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(run)
    return claimed


def orgs_with_unfinished_runs(db: Database) -> list[str]:
    """Organizations with a run still `fired`: what a start-up recovers."""
    with db.read() as session:
        return sorted(session.scalars(select(AutoTrainingRun.org_id).where(AutoTrainingRun.status == "fired")
                                      .distinct()))


def set_dataset(db: Database, run_id: str, dataset_id: str) -> None:
    with db.write() as session:
        session.execute(update(AutoTrainingRun).where(AutoTrainingRun.id == run_id)
                        .values(dataset_id=dataset_id).execution_options(synchronize_session=False))


def finish(db: Database, run_id: str, *, job_id: str | None = None, error: dict[str, Any] | None = None) -> None:
    """`fired` → `submitted` (with the job) or `failed` (with the error); a finished run stays as it is."""
    values: dict[str, Any] = {"status": "failed" if error else "submitted", "finished_at": utcnow(), "error": error}
    if job_id is not None:
        values["job_id"] = job_id
    with db.write() as session:
        session.execute(update(AutoTrainingRun).where(AutoTrainingRun.id == run_id, AutoTrainingRun.status == "fired")
                        .values(**values).execution_options(synchronize_session=False))


def list_runs(db: Database, org_id: str, limit: int = 50) -> list[AutoTrainingRun]:
    with db.read() as session:
        return list(session.scalars(select(AutoTrainingRun).where(AutoTrainingRun.org_id == org_id)
                                    .order_by(AutoTrainingRun.created_at.desc(), AutoTrainingRun.window.desc())
                                    .limit(limit)))


def runs_awaiting_promotion(db: Database) -> list[AutoTrainingRun]:
    """Submitted runs of organizations that promote (activate_if_better) with nothing decided yet."""
    stmt = (select(AutoTrainingRun).join(AutoTrainingConfig, AutoTrainingConfig.org_id == AutoTrainingRun.org_id)
            .where(AutoTrainingConfig.activate_if_better.is_(True), AutoTrainingRun.status == "submitted",
                   AutoTrainingRun.promotion.is_(None))
            .order_by(AutoTrainingRun.created_at))
    with db.read() as session:
        return list(session.scalars(stmt))


def set_evaluation(db: Database, run_id: str, evaluation_id: str) -> None:
    """Record the run's evaluate job (the same one however often submitted: its idempotency key)."""
    with db.write() as session:
        session.execute(update(AutoTrainingRun).where(AutoTrainingRun.id == run_id)
                        .values(evaluation_id=evaluation_id).execution_options(synchronize_session=False))


def decide(db: Database, run_id: str, promotion: dict[str, Any]) -> bool:
    """Record the run's promotion decision once: a guarded UPDATE, so of two processes deciding, one
    acts (activates); False for the other."""
    with db.write() as session:
        moved = session.execute(update(AutoTrainingRun)
                                .where(AutoTrainingRun.id == run_id, AutoTrainingRun.promotion.is_(None))
                                .values(promotion=promotion).execution_options(synchronize_session=False))
        return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def amend_promotion(db: Database, run_id: str, promotion: dict[str, Any]) -> None:
    """What acting on a decision came to (an activation that failed), written over it."""
    with db.write() as session:
        session.execute(update(AutoTrainingRun).where(AutoTrainingRun.id == run_id)
                        .values(promotion=promotion).execution_options(synchronize_session=False))


def promoted_runs(db: Database, org_id: str, task: str) -> list[AutoTrainingRun]:
    """The task's runs that activated their model, newest first."""
    stmt = (select(AutoTrainingRun).where(AutoTrainingRun.org_id == org_id, AutoTrainingRun.task == task,
                                          AutoTrainingRun.promotion.is_not(None))
            .order_by(AutoTrainingRun.created_at.desc(), AutoTrainingRun.window.desc()))
    with db.read() as session:
        return [run for run in session.scalars(stmt) if (run.promotion or {}).get("decision") == "activated"]
