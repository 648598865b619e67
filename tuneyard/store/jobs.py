"""Jobs as the services see them: create (idempotently), read, list, delete.

Every read takes the caller's organization: another organization's job is NotFound, never
"forbidden", so ids leak nothing. A user's requests that move a job (stop, cancel, resume) are
moves of tuneyard.store.lifecycle; delete is refused, naming the job's status, while a worker
holds the job.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import Select, and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneyard.errors import UserError
from tuneyard.store import uuids
from tuneyard.store.engine import Database
from tuneyard.store.errors import IdempotencyConflict, InvalidTransition, NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.status import Event, JobStatus, write_event
from tuneyard.store.tables import Job

S = JobStatus
T = TypeVar("T")


@dataclass(frozen=True)
class NewJob:
    org_id: str
    type: str
    spec: dict[str, Any]  # as the user submitted it
    config: dict[str, Any]  # resolved: what the runner will get
    name: str | None = None
    project_id: str | None = None
    user_key_id: str | None = None
    max_retries: int = 3
    idempotency_key: str | None = None
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # by dialect: tuneyard.store.labels
    memory_estimate_bytes: int | None = None  # the estimate's peak: only a worker with this much claims it
    required_device: str | None = None  # cpu | cuda: only a worker of that device claims it (None: any)


@dataclass(frozen=True)
class CreatedJob:
    job: Job
    created: bool  # False: an earlier request with the same idempotency key made it


def request_hash(body: Any) -> str:
    """A stable hash of a request body: same content, same hash, whatever the key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(db: Database, new: NewJob, *, body_hash: str | None = None) -> CreatedJob:
    """Queue a new job, or return the one an earlier identical request with the same key made.

    Race-safe: concurrent requests with one key all try to insert, the unique constraint on
    (user_key_id, idempotency_key) lets one win, and the others read the winner's job.
    """
    digest = body_hash or request_hash({"spec": new.spec, "name": new.name, "project_id": new.project_id})
    try:
        with db.write() as session:
            existing = find_by_idempotency_key(session, new, digest)
            if existing is not None:
                return CreatedJob(existing, created=False)
            return CreatedJob(insert_job(session, new, digest), created=True)
    except IntegrityError:
        if new.idempotency_key is None or new.user_key_id is None:
            raise
        with db.read() as session:
            existing = find_by_idempotency_key(session, new, digest)
        if existing is None:
            raise
        return CreatedJob(existing, created=False)


def find_by_idempotency_key(session: Session, new: NewJob, digest: str) -> Job | None:
    if new.idempotency_key is None or new.user_key_id is None:
        return None
    job = session.scalars(
        select(Job).where(Job.user_key_id == new.user_key_id, Job.idempotency_key == new.idempotency_key)
    ).one_or_none()
    if job is not None and job.request_hash != digest:
        raise IdempotencyConflict(
            f"idempotency key {new.idempotency_key!r} was used for another request (job {job.id})",
            job_id=job.id,
        )
    return job


def insert_job(session: Session, new: NewJob, digest: str) -> Job:
    job = Job(
        id=new_id("job"), org_id=new.org_id, project_id=new.project_id, user_key_id=new.user_key_id,
        type=new.type, name=new.name, status=S.QUEUED.value, spec=new.spec, config=new.config,
        max_retries=new.max_retries, idempotency_key=new.idempotency_key, request_hash=digest,
        event_seq=1, progress={}, labels=new.labels, memory_estimate_bytes=new.memory_estimate_bytes,
        required_device=new.required_device,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    write_event(session, job.id, 1, Event("created", "job queued", {"status": S.QUEUED.value}))
    return job


def get_job(db: Database, org_id: str, job_id: str) -> Job:
    with db.read() as session:
        return owned_job(session, org_id, job_id)


def owned_job(session: Session, org_id: str, job_id: str) -> Job:
    """The organization's job, by its id or its UUID (tuneyard.store.uuids); another organization's
    is as missing as one that never existed."""
    job = session.get(Job, job_id)
    if job is None and uuids.is_uuid(job_id):
        job = session.scalars(select(Job).where(Job.uuid == job_id.lower())).one_or_none()
    if job is None or job.org_id != org_id:
        raise NotFound("job", job_id)
    return job


def load_job(db: Database, job_id: str) -> Job:
    """A job by id alone, for workers and the platform (not for requests)."""
    with db.read() as session:
        job = session.get(Job, job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


DELETABLE = (S.QUEUED, S.STOPPED, S.COMPLETED, S.FAILED, S.CANCELLED)


def delete_job(db: Database, org_id: str, job_id: str) -> Job:
    """Delete a job no worker holds, with its events, metrics, logs and checkpoint rows.

    Returns the deleted row so the caller can remove the job's files. Trained models stay.
    """
    with db.write() as session:
        stmt = (
            delete(Job)
            .where(Job.id == job_id, Job.org_id == org_id, Job.status.in_([s.value for s in DELETABLE]))
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        job = session.execute(stmt).scalar_one_or_none()
        if job is not None:
            return job
        current = session.scalar(select(Job.status).where(Job.id == job_id, Job.org_id == org_id))
        if current is None:
            raise NotFound("job", job_id)
        raise InvalidTransition(job_id, current, "deleted", hint="cancel it first")


@dataclass(frozen=True)
class JobQuery:
    """Which of an organization's jobs a list shows, newest first. One builder serves both the page's
    rows and its validator's `(id, revision)` (`listed`, for `api/conditional.py`), so the two can
    never select different jobs or order them differently."""

    org_id: str
    statuses: tuple[str, ...] = ()
    """Any of these (none: any status)."""
    type: str | None = None
    project_id: str | None = None
    ids: tuple[str, ...] | None = None
    """Only these jobs (the console's live refresh of the rows it shows)."""
    cursor: str | None = None
    """Where the page before ended (`next_cursor`)."""
    limit: int | None = 20
    """Jobs a page holds; None: every one (the dialects whose list has no pages)."""

    def statement(self, *columns: Any) -> Select[Any]:
        """The page's query with these columns, one row past the limit (whether more follow)."""
        stmt = select(*columns).where(Job.org_id == self.org_id)
        if self.statuses:
            stmt = stmt.where(Job.status.in_(self.statuses))
        if self.type is not None:
            stmt = stmt.where(Job.type == self.type)
        if self.project_id is not None:
            stmt = stmt.where(Job.project_id == self.project_id)
        if self.ids is not None:
            stmt = stmt.where(Job.id.in_(self.ids))
        if self.cursor is not None:
            created_at, last_id = decode_cursor(self.cursor)
            stmt = stmt.where(or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < last_id)))
        stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc())
        return stmt if self.limit is None else stmt.limit(self.limit + 1)

    def cut(self, rows: list[T]) -> tuple[list[T], bool]:
        """The page's rows, and whether more follow."""
        if self.limit is None or len(rows) <= self.limit:
            return rows, False
        return rows[:self.limit], True


@dataclass(frozen=True)
class Page:
    items: list[Job]
    next_cursor: str | None  # None on the last page


def list_jobs(db: Database, query: JobQuery) -> Page:
    """The organization's jobs, newest first, `limit` at a time; pass `next_cursor` for more."""
    with db.read() as session:
        return page_in(session, query)


def page_in(session: Session, query: JobQuery) -> Page:
    """The same, inside a read the caller already holds."""
    items, more = query.cut(list(session.scalars(query.statement(Job))))
    return Page(items, encode_cursor(items[-1]) if more else None)


class Placed(Protocol):
    """What decides why a queued job waits (`services/devices.py`, `memory_admission.py`): a `Job` row,
    or a `Listed` one."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def memory_estimate_bytes(self) -> int | None: ...
    @property
    def required_device(self) -> str | None: ...


class Listed(NamedTuple):
    """A listed job as its page's validator reads it: what names the page (id and revision, which
    every write a reader sees moves) and what else of it decides why a queued job waits."""

    id: str
    revision: int
    status: str
    memory_estimate_bytes: int | None
    required_device: str | None
    output_model_id: str | None


_LISTED = (Job.id, Job.revision, Job.status, Job.memory_estimate_bytes, Job.required_device, Job.output_model_id)


def listed(session: Session, query: JobQuery) -> tuple[list[Listed], bool]:
    """The page `list_jobs` would answer, as `Listed` rows (no spec, config, progress or result read),
    and whether more follow."""
    return query.cut([Listed._make(row) for row in session.execute(query.statement(*_LISTED))])


def encode_cursor(job: Job) -> str:
    """Opaque to clients: where the previous page ended, as (created_at, id)."""
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None or not isinstance(job_id, str):
            raise ValueError("not a cursor")
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise UserError("invalid cursor", field="cursor") from exc
    return when, job_id
