"""Counts for /v1/stats and /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select

from tuneyard.store.engine import Database
from tuneyard.store.ids import utcnow
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Dataset, Job, TrainedModel, Worker


@dataclass(frozen=True)
class Stats:
    jobs_by_status: dict[str, int]  # the organization's, every status present (zeros included)
    queue_depth: int  # every organization's queued jobs: workers serve them all
    models: int
    datasets: int
    workers_alive: int


def stats(db: Database, org_id: str, *, worker_window_s: float, now: datetime | None = None) -> Stats:
    """`worker_window_s`: a worker counts as alive if it heartbeat this recently."""
    since = (now or utcnow()) - timedelta(seconds=worker_window_s)
    by_status = {s.value: 0 for s in JobStatus}
    with db.read() as session:
        rows = session.execute(
            select(Job.status, func.count()).where(Job.org_id == org_id).group_by(Job.status)
        ).all()
        by_status.update({status: count for status, count in rows})

        def count(stmt: Select[Any]) -> int:
            return session.scalar(stmt) or 0

        return Stats(
            jobs_by_status=by_status,
            queue_depth=count(select(func.count()).where(Job.status == JobStatus.QUEUED.value)),
            models=count(select(func.count()).where(TrainedModel.org_id == org_id)),
            datasets=count(select(func.count()).where(Dataset.org_id == org_id)),
            workers_alive=count(
                select(func.count()).where(Worker.state != "stopped", Worker.heartbeat_at >= since)
            ),
        )
