"""Exports of trained models: rows and their few moves.

queued → running → completed | failed. Each move is a guarded UPDATE on the status it leaves, so
two processes cannot both run one export; a `running` export whose process died with its API is
put back to `queued` by `requeue_running` at start-up and run again (an export's folder is
replaced atomically, so a second run is harmless).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.tables import ModelExport

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
EXPORT_STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED)


def create_export(db: Database, org_id: str, model_id: str, *, format: str, quantization: str | None,
                  variant: str, exports_dir: str) -> ModelExport:
    export_id = new_id("exp")
    row = ModelExport(id=export_id, org_id=org_id, model_id=model_id, format=format,
                      quantization=quantization, variant=variant, status=QUEUED,
                      path=f"{exports_dir}/{export_id}", attempts=0)
    with db.write() as session:
        session.add(row)
    return row


def get_export(db: Database, org_id: str, model_id: str, export_id: str) -> ModelExport:
    with db.read() as session:
        row = session.get(ModelExport, export_id)
    if row is None or row.org_id != org_id or row.model_id != model_id:
        raise NotFound("export", export_id)
    return row


def list_exports(db: Database, org_id: str, model_id: str) -> list[ModelExport]:
    stmt = (select(ModelExport).where(ModelExport.org_id == org_id, ModelExport.model_id == model_id)
            .order_by(ModelExport.created_at.desc(), ModelExport.id.desc()))
    with db.read() as session:
        return list(session.scalars(stmt))


def claim(db: Database, export_id: str) -> bool:
    """queued → running; False when another process took it first (or it is gone)."""
    with db.write() as session:
        done = session.execute(
            update(ModelExport).where(ModelExport.id == export_id, ModelExport.status == QUEUED)
            .values(status=RUNNING, attempts=ModelExport.attempts + 1)
        )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def finish(db: Database, export_id: str, *, manifest: dict[str, Any] | None = None,
           error: dict[str, Any] | None = None) -> None:
    """running → completed (with its manifest) or failed (with its error)."""
    status = FAILED if error is not None else COMPLETED
    with db.write() as session:
        session.execute(
            update(ModelExport).where(ModelExport.id == export_id, ModelExport.status == RUNNING)
            .values(status=status, manifest=manifest, error=error, finished_at=utcnow())
        )


def requeue_running(db: Database) -> list[str]:
    """At start-up: exports left running by a process that is gone go back to the queue."""
    with db.write() as session:
        ids = list(session.scalars(select(ModelExport.id).where(ModelExport.status == RUNNING)))
        if ids:
            session.execute(update(ModelExport).where(ModelExport.id.in_(ids), ModelExport.status == RUNNING)
                            .values(status=QUEUED))
    return ids


def queued_ids(db: Database) -> list[str]:
    stmt = select(ModelExport.id).where(ModelExport.status == QUEUED).order_by(ModelExport.created_at)
    with db.read() as session:
        return list(session.scalars(stmt))
