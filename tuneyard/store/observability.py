"""Service-wide figures for the Prometheus endpoint: every organization, straight from the tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from tuneyard.store.engine import Database
from tuneyard.store.status import TERMINAL, JobStatus
from tuneyard.store.tables import Job

RECENT_JOBS = 5000
"""Latency and duration figures look at this many of the newest jobs, so a scrape stays cheap."""


@dataclass(frozen=True)
class ServiceFigures:
    jobs_by_status: dict[str, int]  # every status, zeros included
    claim_latencies_s: list[float]  # created -> first claimed, for recent jobs that were claimed
    durations_s: dict[str, list[float]]  # terminal status -> started -> finished, recent jobs


def service_figures(db: Database) -> ServiceFigures:
    by_status = {s.value: 0 for s in JobStatus}
    recent = (
        select(Job.status, Job.created_at, Job.started_at, Job.finished_at)
        .order_by(Job.created_at.desc()).limit(RECENT_JOBS)
    )
    with db.read() as session:
        counted = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        by_status.update({status: count for status, count in counted})
        rows = session.execute(recent).all()
    latencies = [_seconds(r.created_at, r.started_at) for r in rows if r.started_at is not None]
    durations: dict[str, list[float]] = {s.value: [] for s in TERMINAL}
    for r in rows:
        if r.status in durations and r.started_at is not None and r.finished_at is not None:
            durations[r.status].append(_seconds(r.started_at, r.finished_at))
    return ServiceFigures(by_status, latencies, durations)


def jobs_by_org(db: Database) -> dict[tuple[str, str], int]:
    """(organization id, status) -> jobs, for the statuses each organization has jobs in."""
    with db.read() as session:
        counted = session.execute(select(Job.org_id, Job.status, func.count()).group_by(Job.org_id, Job.status))
        return {(org_id, status): count for org_id, status, count in counted}


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def ping(db: Database) -> None:
    """Raise if the database does not answer a trivial query."""
    with db.read() as session:
        session.execute(select(1))
