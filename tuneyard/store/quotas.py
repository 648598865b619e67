"""Per-organization quotas, checked inside the transaction that creates what they count.

Counting apart from the insert races: fifty concurrent uploads would all see room for one more.
So each creating transaction first locks its organization's row, then counts, then inserts. On
PostgreSQL the lock is `FOR NO KEY UPDATE`, which serializes the quota checks of one organization
and nothing else (the foreign-key checks of other inserts take KEY SHARE, which it leaves free); on
SQLite every write transaction is `BEGIN IMMEDIATE`, which already excludes every other writer.

A limit of 0 means no quota. Quotas only refuse new things: an organization over a quota that was
lowered keeps what it has.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.errors import QuotaExceeded, StorageQuotaExceeded
from tuneyard.store.status import TERMINAL, JobStatus
from tuneyard.store.tables import BaseModelEntry, Dataset, File, Job, Organization

ACTIVE = tuple(s.value for s in JobStatus if s not in TERMINAL and s is not JobStatus.STOPPED)
"""The statuses a job counts against `active_jobs` in: queued or held by a worker. A stopped job
holds only disk, and a resume puts it back in the queue."""


@dataclass(frozen=True)
class Quotas:
    """What one organization may hold at once; each field is a Settings field `quota_<name>`."""

    files: int = 0
    file_bytes: int = 0
    datasets: int = 0
    base_models: int = 0
    active_jobs: int = 0

    @classmethod
    def of(cls, settings: Settings) -> Quotas:
        return cls(files=settings.quota_files, file_bytes=settings.quota_file_bytes,
                   datasets=settings.quota_datasets, base_models=settings.quota_base_models,
                   active_jobs=settings.quota_active_jobs)


NO_QUOTAS = Quotas()


def lock_org(session: Session, org_id: str) -> None:
    """Hold the organization's quota lock until the transaction ends."""
    session.execute(select(Organization.id).where(Organization.id == org_id).with_for_update(key_share=True))


def _count(session: Session, counted: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).where(counted)) or 0)


def check_files(session: Session, org_id: str, quotas: Quotas, new_bytes: int) -> None:
    """Room for one more file of `new_bytes`, or QuotaExceeded (count) / StorageQuotaExceeded (bytes)."""
    if not (quotas.files or quotas.file_bytes):
        return
    lock_org(session, org_id)
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(File.bytes), 0)).where(File.org_id == org_id)
    ).one()
    if quotas.files and count >= quotas.files:
        raise QuotaExceeded("files", quotas.files, int(count), _used_up("files", quotas.files, int(count), "files"))
    if quotas.file_bytes and int(total) + new_bytes > quotas.file_bytes:
        raise storage_refusal(quotas.file_bytes, int(total))


def storage_refusal(limit: int, used: int) -> StorageQuotaExceeded:
    """The error for an upload that would take the organization's files past `limit` bytes."""
    message = (f"this upload would take this organization's files past their quota of {limit} bytes "
               f"({used} used; {_names('file_bytes')})")
    return StorageQuotaExceeded("file_bytes", limit, used, message)


def file_bytes_left(db: Database, org_id: str, quotas: Quotas) -> int | None:
    """Bytes the organization may still upload, None without a quota. Read without the lock: an
    upload stops as soon as it is over, and `check_files` decides when it is stored."""
    if not quotas.file_bytes:
        return None
    with db.read() as session:
        total = session.scalar(select(func.coalesce(func.sum(File.bytes), 0)).where(File.org_id == org_id))
    return max(0, quotas.file_bytes - int(total or 0))


def check_datasets(session: Session, org_id: str, quotas: Quotas) -> None:
    _check_count(session, org_id, "datasets", quotas.datasets, Dataset.org_id == org_id, "datasets")


def check_base_models(session: Session, org_id: str, quotas: Quotas) -> None:
    counted = BaseModelEntry.org_id == org_id
    _check_count(session, org_id, "base_models", quotas.base_models, counted, "registered base models")


def check_active_jobs(session: Session, org_id: str, quotas: Quotas) -> None:
    counted = (Job.org_id == org_id) & Job.status.in_(ACTIVE)
    _check_count(session, org_id, "active_jobs", quotas.active_jobs, counted, "queued or running jobs")


def _check_count(session: Session, org_id: str, quota: str, limit: int, counted: ColumnElement[bool],
                 what: str) -> None:
    """Room for one more of what `counted` counts, or QuotaExceeded naming `quota` and its limit."""
    if not limit:
        return
    lock_org(session, org_id)
    used = _count(session, counted)
    if used >= limit:
        raise QuotaExceeded(quota, limit, used, _used_up(quota, limit, used, what))


def _used_up(quota: str, limit: int, used: int, what: str) -> str:
    return f"this organization has {used} {what}, its quota of {limit} ({_names(quota)})"


def _names(quota: str) -> str:
    # Both names: the quota for whoever reads the details, the variable for the operator who sets it.
    return f"quota {quota}, set by TUNEYARD_QUOTA_{quota.upper()}"
