"""Each object's UUID beside its native id, and the one lookup from either to the native id.

Jobs, checkpoints, datasets, files, base models and trained models each have a `uuid` column
(migration 0009), given at insert (`tables._uuid`). Dialects whose documents say UUID (Felix,
Fusion) show it; every dialect's routes accept either form through `native_id`, so a client may
mix what one dialect showed with what another did. Another organization's object is as missing
as one that never existed; a global base model is everyone's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import BaseModelEntry, Checkpoint, Dataset, File, Job, TrainedModel

UUID_SHAPE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Kind:
    """A kind of object with a UUID: its table and how an organization owns a row of it."""

    name: str  # as NotFound names it
    table: Any
    owned: Any  # (org_id) -> the condition that the row is the organization's (or global)


def _org_owned(table: Any) -> Any:
    return lambda org_id: table.org_id == org_id


def _base_model_owned(org_id: str) -> ColumnElement[bool]:
    return or_(BaseModelEntry.org_id.is_(None), BaseModelEntry.org_id == org_id)


def _checkpoint_owned(org_id: str) -> ColumnElement[bool]:
    return Checkpoint.job_id.in_(select(Job.id).where(Job.org_id == org_id))


KINDS: dict[str, Kind] = {
    "job": Kind("job", Job, _org_owned(Job)),
    "checkpoint": Kind("checkpoint", Checkpoint, _checkpoint_owned),
    "dataset": Kind("dataset", Dataset, _org_owned(Dataset)),
    "file": Kind("file", File, _org_owned(File)),
    "base_model": Kind("base model", BaseModelEntry, _base_model_owned),
    "model": Kind("model", TrainedModel, _org_owned(TrainedModel)),
}


def is_uuid(ref: str) -> bool:
    return bool(UUID_SHAPE.match(ref))


def native_id_in(session: Session, org_id: str, kind: str, ref: str) -> str:
    """The native id of the organization's `kind` called `ref` (its native id or its UUID); NotFound
    otherwise. A UUID is matched in its canonical lowercase form, whatever case it came in."""
    found = KINDS[kind]
    matches = or_(found.table.id == ref, found.table.uuid == ref.lower()) if is_uuid(ref) else found.table.id == ref
    row_id = session.scalar(select(found.table.id).where(matches, found.owned(org_id)).limit(1))
    if row_id is None:
        raise NotFound(found.name, ref)
    return str(row_id)


def native_id(db: Database, org_id: str, kind: str, ref: str) -> str:
    """`native_id_in`, in a read of its own."""
    with db.read() as session:
        return native_id_in(session, org_id, kind, ref)


def uuids_of(session: Session, kind: str, ids: list[str]) -> dict[str, str]:
    """The UUIDs of the rows of `kind` with these native ids (rows without one are left out)."""
    table = KINDS[kind].table
    if not ids:
        return {}
    rows = session.execute(select(table.id, table.uuid).where(table.id.in_(ids))).all()
    return {row_id: row_uuid for row_id, row_uuid in rows if row_uuid is not None}


def jobs_with_uuid_prefix(session: Session, org_id: str, prefix: str) -> list[Job]:
    """The organization's jobs whose UUID starts with `prefix` (lowercase hex): how an id that carries
    part of the UUID (Archetype's `ftj-<name>-<8 hex>`) finds its job."""
    if not re.fullmatch(r"[0-9a-f]{1,32}", prefix):
        return []
    return list(session.scalars(select(Job).where(Job.org_id == org_id, Job.uuid.startswith(prefix, autoescape=True))))
