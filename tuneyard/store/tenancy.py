"""Organizations, projects and API keys.

A key is shown once, when it is made; the store keeps only its sha256 (a lookup by hash needs no
slow KDF: the key has 256 random bits, nothing to brute-force) and a visible prefix for listings.
A key is an organization's admin (keys, base-model registration, quotas) or a member (jobs and
data); the API decides by `Principal.is_admin` in one dependency (tuneyard.api.deps).

Organizations are made explicitly (`tuneyard orgs create`); the one implicit one is the first,
which `tuneyard serve` makes on an empty database (`create_first_org`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.tables import ApiKey, Job, Organization, Project

KEY_PREFIX = "ty_"
VISIBLE_CHARS = 10  # "ty_" and the first seven random characters


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organization and the key (the "user")."""

    org_id: str
    key_id: str
    is_admin: bool


@dataclass(frozen=True)
class OrgSummary:
    """An organization as `tuneyard orgs list` shows it."""

    id: str
    name: str
    created_at: datetime
    active_keys: int
    admin_keys: int


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_org(db: Database, name: str, *, unique_name: bool = False) -> Organization:
    """A new organization; with `unique_name`, a Conflict when one of that name exists (the CLI's
    rule, so `--org NAME` names one; older databases may hold duplicates, and ids always work)."""
    with db.write() as session:
        if unique_name and session.scalar(select(Organization.id).where(Organization.name == name).limit(1)):
            raise Conflict(f"an organization named {name!r} already exists", name=name)
        org = Organization(id=new_id("org"), name=name, created_at=utcnow())
        session.add(org)
        return org


def create_first_org(db: Database, name: str) -> Organization | None:
    """An organization, made only when the database has none yet (one transaction): None otherwise."""
    with db.write() as session:
        if session.scalar(select(Organization.id).limit(1)) is not None:
            return None
        org = Organization(id=new_id("org"), name=name, created_at=utcnow())
        session.add(org)
        return org


def find_org(db: Database, ref: str) -> Organization:
    """The organization with id `ref`, else the one named `ref`; NotFound for none, Conflict when
    several share the name."""
    with db.read() as session:
        org = session.get(Organization, ref)
        if org is not None:
            return org
        named = list(session.scalars(select(Organization).where(Organization.name == ref).limit(2)))
    if not named:
        raise NotFound("organization", ref)
    if len(named) > 1:
        raise Conflict(f"several organizations are named {ref!r}: give its id (`tuneyard orgs list`)", name=ref)
    return named[0]


def list_orgs(db: Database) -> list[OrgSummary]:
    """Every organization, oldest first, with how many of its keys are live (and admin)."""
    live = ApiKey.revoked_at.is_(None)
    stmt = (
        select(Organization.id, Organization.name, Organization.created_at,
               func.count(ApiKey.id).filter(live), func.count(ApiKey.id).filter(live, ApiKey.is_admin))
        .outerjoin(ApiKey, ApiKey.org_id == Organization.id)
        .group_by(Organization.id, Organization.name, Organization.created_at)
        .order_by(Organization.created_at, Organization.id)
    )
    with db.read() as session:
        return [OrgSummary(*row) for row in session.execute(stmt)]


def create_project(db: Database, org_id: str, name: str) -> Project:
    try:
        with db.write() as session:
            project = Project(id=new_id("proj"), org_id=org_id, name=name, created_at=utcnow())
            session.add(project)
            session.flush()
            return project
    except IntegrityError as exc:
        raise Conflict(f"a project named {name!r} already exists", name=name) from exc


def get_project(db: Database, org_id: str, project_id: str) -> Project:
    with db.read() as session:
        project = session.get(Project, project_id)
    if project is None or project.org_id != org_id:
        raise NotFound("project", project_id)
    return project


def list_projects(db: Database, org_id: str) -> list[Project]:
    with db.read() as session:
        return list(session.scalars(select(Project).where(Project.org_id == org_id).order_by(Project.created_at)))


def create_api_key(db: Database, org_id: str, name: str, *, is_admin: bool = False) -> tuple[ApiKey, str]:
    """A new key; returns the row and the plaintext, which is never stored or shown again."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"), org_id=org_id, name=name, prefix=plaintext[:VISIBLE_CHARS],
        key_hash=hash_key(plaintext), is_admin=is_admin, created_at=utcnow(),
    )
    with db.write() as session:
        session.add(key)
    return key, plaintext


def authenticate(db: Database, plaintext: str) -> Principal | None:
    """The principal behind a key, or None for an unknown or revoked one."""
    with db.read() as session:
        return principal_for(session, plaintext)


# Every request runs one of these two, so each is built once a process, with its values bound at
# execution: building a SELECT and its cache key anew was a third of a poll's key-and-job read.
_PRINCIPAL = select(ApiKey.org_id, ApiKey.id, ApiKey.is_admin).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
_PRINCIPAL_AND_JOB = (
    select(ApiKey.org_id, ApiKey.id, ApiKey.is_admin, Job)
    .select_from(ApiKey)
    .outerjoin(Job, and_(Job.id == bindparam("job_id"), Job.org_id == ApiKey.org_id))
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


def principal_for(session: Session, plaintext: str) -> Principal | None:
    """`authenticate` inside the caller's transaction (a request's one read)."""
    if not plaintext.startswith(KEY_PREFIX):
        return None
    row = session.execute(_PRINCIPAL, {"key_hash": hash_key(plaintext)}).one_or_none()
    return None if row is None else Principal(row.org_id, row.id, row.is_admin)


def principal_and_job(session: Session, plaintext: str, job_id: str | None) -> tuple[Principal | None, Job | None]:
    """The principal behind a key and, by its native id, that principal's organization's job, in one
    statement: a request about a job (polled a hundred times a second) makes one round trip for
    both. (None, None) for an unknown or revoked key; a job of another organization is None."""
    if not plaintext.startswith(KEY_PREFIX):
        return None, None
    if job_id is None:
        return principal_for(session, plaintext), None
    row = session.execute(_PRINCIPAL_AND_JOB, {"key_hash": hash_key(plaintext), "job_id": job_id}).one_or_none()
    if row is None:
        return None, None
    return Principal(row.org_id, row.id, row.is_admin), row.Job


_KEY_AND_JOB_REVISION = (
    select(ApiKey.org_id, Job.revision, Job.status)
    .select_from(ApiKey)
    .join(Job, and_(Job.id == bindparam("job_id"), Job.org_id == ApiKey.org_id))
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


@dataclass(frozen=True)
class JobRevision:
    """What decides a conditional answer about a job, read for a live key of the job's organization."""

    org_id: str
    revision: int
    status: str


async def job_revision_inline(db: Database, plaintext: str, job_id: str) -> JobRevision | None:
    """The job's revision and status when `plaintext` is a live key of the organization that owns the
    job of native id `job_id`; None otherwise (an unknown or revoked key, another organization's job, no
    such job: which of them is for `principal_and_job` to say). One statement, read on the caller's
    event loop without blocking it (`db.inline`, where available): what a poll answered from
    `api/hot_reads.py` reads of the database. `InlineReadBusy` when the read would wait or fails."""
    if not plaintext.startswith(KEY_PREFIX):
        return None
    found = await db.inline.first(_KEY_AND_JOB_REVISION, {"key_hash": hash_key(plaintext), "job_id": job_id})
    return None if found is None else JobRevision(*found)


def key_is_live(db: Database, org_id: str, key_id: str) -> bool:
    """Whether the organization's key exists and is not revoked (what a stored key may still act as)."""
    with db.read() as session:
        found = session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.org_id == org_id,
                                                       ApiKey.revoked_at.is_(None)))
        return found is not None


def list_api_keys(db: Database, org_id: str) -> list[ApiKey]:
    with db.read() as session:
        return list(session.scalars(select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.created_at)))


def revoke_api_key(db: Database, org_id: str, key_id: str) -> None:
    """Revoke a key (idempotent); it stops authenticating at once."""
    with db.write() as session:
        done = session.execute(
            update(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == org_id)
            .values(revoked_at=utcnow()).execution_options(synchronize_session=False)
        )
        if done.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound("api key", key_id)
