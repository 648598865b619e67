"""Trajectories and the record of datasets built from them, scoped by organization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import utcnow
from tuneyard.store.trajectory_tables import DatasetBuild, Trajectory


@dataclass(frozen=True)
class NewTrajectory:
    id: str
    source: str
    status: str
    task: str
    start_time: int
    end_time: int | None
    llm_call_count: int
    models: list[str]
    body: dict[str, Any]
    content_sha256: str


@dataclass(frozen=True)
class Ingested:
    """What a batch did: ids stored now, and ids that were already stored with the same content."""

    created: list[str]
    existing: list[str]
    tasks: list[str]  # the tasks that received a new completed trajectory


@dataclass(frozen=True)
class TrajectoryPage:
    items: list[Trajectory]
    total: int


@dataclass(frozen=True)
class Selection:
    """Which trajectories a build takes (None: no condition). Applied in SQL; `model` in the caller."""

    statuses: tuple[str, ...]
    task: str | None = None
    source: str | None = None
    since: int | None = None  # start_time >= since (epoch ms)
    until: int | None = None  # start_time < until
    min_llm_calls: int = 1
    through_seq: int | None = None  # auto-training: only what its firing counted


def ingest(db: Database, org_id: str, batch: Sequence[NewTrajectory]) -> Ingested:
    """Store the batch in one transaction: all of it or nothing.

    An id already stored with the same content is a retry and changes nothing; with other content
    it is a Conflict naming the id (a trajectory is immutable once ingested).
    """
    try:
        created, existing = _insert_new(db, org_id, batch)
    except IntegrityError:
        # Another process stored one of these ids since we looked: look again, it is a retry now.
        created, existing = _insert_new(db, org_id, batch)
    fresh = set(created)
    tasks = sorted({t.task for t in batch if t.id in fresh and t.status == "completed"})
    return Ingested(created, existing, tasks)


def _insert_new(db: Database, org_id: str, batch: Sequence[NewTrajectory]) -> tuple[list[str], list[str]]:
    ids = [t.id for t in batch]
    created: list[str] = []
    existing: list[str] = []
    with db.write() as session:
        stored = {row.id: row.content_sha256 for row in session.execute(
            select(Trajectory.id, Trajectory.content_sha256).where(Trajectory.org_id == org_id,
                                                                   Trajectory.id.in_(ids)))}
        for new in batch:
            if new.id in stored:
                if stored[new.id] != new.content_sha256:
                    raise Conflict(f"trajectory {new.id} already exists with other content", id=new.id)
                existing.append(new.id)
                continue
            session.add(Trajectory(org_id=org_id, id=new.id, source=new.source, status=new.status,
                                   task=new.task, start_time=new.start_time, end_time=new.end_time,
                                   llm_call_count=new.llm_call_count, models=new.models, body=new.body,
                                   content_sha256=new.content_sha256, created_at=utcnow()))
            stored[new.id] = new.content_sha256
            created.append(new.id)
    return created, existing


def list_page(db: Database, org_id: str, *, limit: int, offset: int, task: str | None = None,
              status: str | None = None, source: str | None = None) -> TrajectoryPage:
    """Newest ingested first, with the total the filters match."""
    where = [Trajectory.org_id == org_id]
    if task is not None:
        where.append(Trajectory.task == task)
    if status is not None:
        where.append(Trajectory.status == status)
    if source is not None:
        where.append(Trajectory.source == source)
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(Trajectory).where(*where)) or 0
        rows = session.scalars(select(Trajectory).where(*where).order_by(Trajectory.seq.desc())
                               .limit(limit).offset(offset))
        return TrajectoryPage(list(rows), total)


def get(db: Database, org_id: str, trajectory_id: str) -> Trajectory:
    with db.read() as session:
        row = session.scalars(select(Trajectory).where(Trajectory.org_id == org_id,
                                                       Trajectory.id == trajectory_id)).one_or_none()
    if row is None:
        raise NotFound("trajectory", trajectory_id)
    return row


def delete_one(db: Database, org_id: str, trajectory_id: str) -> None:
    with db.write() as session:
        gone = session.execute(delete(Trajectory).where(Trajectory.org_id == org_id, Trajectory.id == trajectory_id)
                               .execution_options(synchronize_session=False))
    if gone.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound("trajectory", trajectory_id)


def select_for_build(session: Session, org_id: str, selection: Selection) -> list[Trajectory]:
    """The matching trajectories in a stable order (start time, then id): a build's order."""
    stmt = select(Trajectory).where(Trajectory.org_id == org_id, Trajectory.status.in_(selection.statuses),
                                    Trajectory.llm_call_count >= selection.min_llm_calls)
    if selection.task is not None:
        stmt = stmt.where(Trajectory.task == selection.task)
    if selection.source is not None:
        stmt = stmt.where(Trajectory.source == selection.source)
    if selection.since is not None:
        stmt = stmt.where(Trajectory.start_time >= selection.since)
    if selection.until is not None:
        stmt = stmt.where(Trajectory.start_time < selection.until)
    if selection.through_seq is not None:
        stmt = stmt.where(Trajectory.seq <= selection.through_seq)
    return list(session.scalars(stmt.order_by(Trajectory.start_time, Trajectory.id)))


def record_build(session: Session, build: DatasetBuild) -> None:
    session.add(build)


def get_build(db: Database, org_id: str, dataset_id: str) -> DatasetBuild | None:
    with db.read() as session:
        row = session.get(DatasetBuild, dataset_id)
    return row if row is not None and row.org_id == org_id else None


def build_by_content(db: Database, org_id: str, content_sha256: str) -> DatasetBuild | None:
    """A dataset already built with exactly this content, if one is still there."""
    with db.read() as session:
        return session.scalars(select(DatasetBuild).where(DatasetBuild.org_id == org_id,
                                                          DatasetBuild.content_sha256 == content_sha256)
                               .order_by(DatasetBuild.created_at)).first()


def list_builds(db: Database, org_id: str) -> list[DatasetBuild]:
    with db.read() as session:
        return list(session.scalars(select(DatasetBuild).where(DatasetBuild.org_id == org_id)
                                    .order_by(DatasetBuild.created_at.desc())))
