"""What a dialect keeps about a job in its own words: its fields (labels) and its ids (aliases).

Labels are one JSON object per dialect on the job row (`{"openai": {"suffix": ...}}`), written
with the job and replaced a dialect at a time; the native API shows none of them. An alias maps a
dialect's id for a job (a vendor's UUID, a name-shaped id) to the job's id, unique per
organization and dialect; aliases go when their job goes. Secrets never come here: a request's
secrets are kept out of everything stored (tuneyard.services.submission).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneyard.store.changes import bump
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import utcnow
from tuneyard.store.jobs import owned_job
from tuneyard.store.tables import Job, JobAlias

Labels = dict[str, dict[str, Any]]
"""A job's labels: each dialect's own fields, by dialect name."""


def set_labels(db: Database, org_id: str, job_id: str, dialect: str, fields: Mapping[str, Any]) -> Labels:
    """Replace `dialect`'s labels of the job (none left when `fields` is empty); return all of them."""
    with db.write() as session:
        job = session.scalars(
            select(Job).where(Job.id == job_id, Job.org_id == org_id).with_for_update()
        ).one_or_none()
        if job is None:
            raise NotFound("job", job_id)
        labels = {name: own for name, own in (job.labels or {}).items() if name != dialect}
        if fields:
            labels[dialect] = dict(fields)
        job.labels = labels  # a new object: the JSON column notices assignment, not mutation
        session.execute(update(Job).where(Job.id == job_id).values(**bump(session, job_id))
                        .execution_options(synchronize_session=False))
        return labels


def get_labels(db: Database, org_id: str, job_id: str, dialect: str) -> dict[str, Any]:
    """`dialect`'s labels of the job; {} when it set none."""
    with db.read() as session:
        labels = owned_job(session, org_id, job_id).labels or {}
    return dict(labels.get(dialect) or {})


def add_alias(db: Database, org_id: str, dialect: str, external_id: str, job_id: str) -> None:
    """Let `dialect` call the job `external_id`. Saying so again is a no-op; an id another job
    has in that dialect is a Conflict."""
    try:
        with db.write() as session:
            owned_job(session, org_id, job_id)
            if _aliased(session, org_id, dialect, external_id, job_id):
                return
            session.add(JobAlias(org_id=org_id, dialect=dialect, external_id=external_id, job_id=job_id,
                                 created_at=utcnow()))
    except IntegrityError:
        # Two requests naming at once: the loser reads what the winner wrote.
        with db.read() as session:
            if not _aliased(session, org_id, dialect, external_id, job_id):
                raise


def _aliased(session: Session, org_id: str, dialect: str, external_id: str, job_id: str) -> bool:
    """True when the alias exists for this job; Conflict when another job holds it."""
    held = session.get(JobAlias, (org_id, dialect, external_id))
    if held is None:
        return False
    if held.job_id != job_id:
        raise Conflict(f"{dialect} id {external_id!r} already names job {held.job_id}",
                       dialect=dialect, external_id=external_id, job_id=held.job_id)
    return True


def resolve_alias(db: Database, org_id: str, dialect: str, external_id: str) -> str:
    """The id of the job `dialect` calls `external_id` in this organization; NotFound otherwise."""
    with db.read() as session:
        held = session.get(JobAlias, (org_id, dialect, external_id))
    if held is None:
        raise NotFound("job", external_id)
    return held.job_id


def aliases_of(db: Database, org_id: str, job_id: str) -> dict[str, list[str]]:
    """Every dialect's ids for the job, by dialect name."""
    with db.read() as session:
        owned_job(session, org_id, job_id)
        rows = session.execute(
            select(JobAlias.dialect, JobAlias.external_id)
            .where(JobAlias.org_id == org_id, JobAlias.job_id == job_id)
            .order_by(JobAlias.dialect, JobAlias.created_at, JobAlias.external_id)
        ).all()
    found: dict[str, list[str]] = {}
    for dialect, external_id in rows:
        found.setdefault(dialect, []).append(external_id)
    return found
