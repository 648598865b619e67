"""Uploaded files and the datasets made of them, scoped by organization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.quotas import NO_QUOTAS, Quotas, check_datasets, check_files
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Dataset, File, Job

DATASET_STATUSES = ("validating", "ready", "invalid")


@dataclass(frozen=True)
class NewFile:
    org_id: str
    filename: str
    bytes: int
    sha256: str
    path: str
    purpose: str = "fine-tune"


def create_file(db: Database, new: NewFile, *, file_id: str | None = None, quotas: Quotas = NO_QUOTAS) -> File:
    """Record an uploaded blob (already written to `path`); pass `file_id` if the path used it.

    Raises QuotaExceeded / StorageQuotaExceeded when the organization's quotas have no room for it."""
    row = File(id=file_id or new_id("file"), org_id=new.org_id, filename=new.filename, bytes=new.bytes,
               sha256=new.sha256, path=new.path, purpose=new.purpose, created_at=utcnow())
    with db.write() as session:
        check_files(session, new.org_id, quotas, new.bytes)
        session.add(row)
    return row


def get_file(db: Database, org_id: str, file_id: str) -> File:
    with db.read() as session:
        row = session.get(File, file_id)
    if row is None or row.org_id != org_id:
        raise NotFound("file", file_id)
    return row


def list_files(db: Database, org_id: str, purpose: str | None = None) -> list[File]:
    query = select(File).where(File.org_id == org_id)
    if purpose is not None:
        query = query.where(File.purpose == purpose)
    with db.read() as session:
        return list(session.scalars(query.order_by(File.created_at.desc())))


def file_names(session: Session, org_id: str, file_ids: Sequence[str]) -> dict[str, str]:
    """The name each of these files was uploaded with, by id: the organization's only (in the caller's read)."""
    rows = session.execute(_FILE_NAMES, {"org_id": org_id, "file_ids": list(file_ids)})
    return {file_id: filename for file_id, filename in rows}


# Built once a process: every read of a job trained on uploads shows their names.
_FILE_NAMES = select(File.id, File.filename).where(File.org_id == bindparam("org_id"),
                                                  File.id.in_(bindparam("file_ids", expanding=True)))


def delete_file(db: Database, org_id: str, file_id: str) -> File:
    """Delete the row; returns it so the caller can remove the blob."""
    with db.write() as session:
        row = session.execute(
            delete(File).where(File.id == file_id, File.org_id == org_id).returning(File)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound("file", file_id)
    return row


# A job in any other status may still read its data: a failed job can be queued again, a stopped one resumed.
_DONE_WITH_DATA = (JobStatus.COMPLETED.value, JobStatus.CANCELLED.value)


def delete_unused_file(db: Database, org_id: str, file_id: str) -> File:
    """Delete the file's row unless a dataset lists it or a job that may still run reads it: then
    Conflict naming them, since datasets and jobs read the upload itself, not a copy. Returns the
    row so the caller can remove the blob."""
    with db.write() as session:
        row = session.get(File, file_id, with_for_update=True)
        if row is None or row.org_id != org_id:
            raise NotFound("file", file_id)
        datasets = [d.name for d in session.scalars(select(Dataset).where(Dataset.org_id == org_id))
                    if file_id in d.file_ids]
        unfinished = select(Job).where(Job.org_id == org_id, Job.status.not_in(_DONE_WITH_DATA))
        jobs = [j.id for j in session.scalars(unfinished)
                if any(ref.get("path") == row.path for ref in (j.config or {}).get("datasets") or [])]
        if datasets or jobs:
            names = ", ".join([f"dataset {n!r}" for n in datasets] + [f"job {j}" for j in jobs])
            raise Conflict(f"file {file_id} is in use by {names}: delete those first", id=file_id,
                           datasets=datasets, jobs=jobs)
        session.delete(row)
    return row


def create_dataset(db: Database, org_id: str, name: str, file_ids: list[str], format: str = "auto", *,
                   quotas: Quotas = NO_QUOTAS) -> Dataset:
    """A dataset in `validating`; every file must belong to the organization. Names are unique."""
    now = utcnow()
    row = Dataset(id=new_id("ds"), org_id=org_id, name=name, file_ids=list(file_ids), format=format,
                  status="validating", errors=[], created_at=now, updated_at=now)
    try:
        with db.write() as session:
            owned = set(session.scalars(select(File.id).where(File.id.in_(file_ids), File.org_id == org_id)))
            missing = [f for f in file_ids if f not in owned]
            if missing:
                raise NotFound("file", missing[0])
            check_datasets(session, org_id, quotas)
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(f"a dataset named {name!r} already exists", name=name) from exc
    return row


def set_dataset_validated(
    db: Database, dataset_id: str, *, status: str, examples: int | None = None,
    tokens_est: int | None = None, bytes: int | None = None, errors: list[dict[str, Any]] | None = None,
) -> None:
    """Record the validation verdict: `ready` with stats, or `invalid` with line-numbered errors."""
    if status not in DATASET_STATUSES:
        raise ValueError(f"unknown dataset status {status!r}")
    with db.write() as session:
        session.execute(
            update(Dataset).where(Dataset.id == dataset_id)
            .values(status=status, examples=examples, tokens_est=tokens_est, bytes=bytes,
                    errors=errors or [], updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def get_dataset(db: Database, org_id: str, dataset_id: str) -> Dataset:
    with db.read() as session:
        row = session.get(Dataset, dataset_id)
    if row is None or row.org_id != org_id:
        raise NotFound("dataset", dataset_id)
    return row


def get_dataset_by_name(db: Database, org_id: str, name: str) -> Dataset:
    with db.read() as session:
        row = session.scalars(select(Dataset).where(Dataset.org_id == org_id, Dataset.name == name)).one_or_none()
    if row is None:
        raise NotFound("dataset", name)
    return row


def unfinished_datasets(db: Database) -> list[tuple[Dataset, list[File]]]:
    """Every organization's datasets still `validating`, each with its files (those that still exist)."""
    with db.read() as session:
        found = list(session.scalars(select(Dataset).where(Dataset.status == "validating")))
        files = {f.id: f for f in session.scalars(select(File).where(
            File.id.in_([fid for d in found for fid in d.file_ids])))}
    return [(d, [files[fid] for fid in d.file_ids if fid in files]) for d in found]


def list_datasets(db: Database, org_id: str) -> list[Dataset]:
    stmt = select(Dataset).where(Dataset.org_id == org_id).order_by(Dataset.created_at.desc())
    with db.read() as session:
        return list(session.scalars(stmt))


def delete_dataset(db: Database, org_id: str, dataset_id: str) -> Dataset:
    with db.write() as session:
        row = session.execute(
            delete(Dataset).where(Dataset.id == dataset_id, Dataset.org_id == org_id).returning(Dataset)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound("dataset", dataset_id)
    return row
