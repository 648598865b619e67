"""Base models (what jobs start from) and trained models (what completed jobs made).

A base model with org_id None is global: every organization sees it (the built-in ones).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.quotas import NO_QUOTAS, Quotas, check_base_models
from tuneyard.store.tables import BaseModelEntry, TrainedModel
from tuneyard.store.upsert import insert_ignoring_duplicates

SOURCE_KINDS = ("builtin", "local", "gguf", "hub")


def register_base_model(
    db: Database, *, org_id: str | None, source_kind: str, source: str,
    meta: dict[str, Any] | None = None, model_id: str | None = None, quotas: Quotas = NO_QUOTAS,
) -> BaseModelEntry:
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {source_kind!r}")
    row = BaseModelEntry(id=model_id or new_id("bm"), org_id=org_id, source_kind=source_kind,
                         source=source, meta=meta or {}, created_at=utcnow())
    try:
        with db.write() as session:
            if org_id is not None:  # global models are the operator's, outside every quota
                check_base_models(session, org_id, quotas)
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(f"base model {row.id} already exists", id=row.id) from exc
    return row


def ensure_builtin_base_model(db: Database, model_id: str, source: str, meta: dict[str, Any]) -> None:
    """Add a global built-in model unless it is there (safe for concurrent start-ups)."""
    row = {"id": model_id, "org_id": None, "source_kind": "builtin", "source": source, "meta": meta,
           "created_at": utcnow()}
    with db.write() as session:
        insert_ignoring_duplicates(session, BaseModelEntry, [row], ("id",))


def _visible_to(org_id: str) -> Any:
    return or_(BaseModelEntry.org_id.is_(None), BaseModelEntry.org_id == org_id)


def get_base_model(db: Database, org_id: str, model_id: str) -> BaseModelEntry:
    stmt = select(BaseModelEntry).where(BaseModelEntry.id == model_id, _visible_to(org_id))
    with db.read() as session:
        row = session.scalars(stmt).one_or_none()
    if row is None:
        raise NotFound("base model", model_id)
    return row


def list_base_models(db: Database, org_id: str) -> list[BaseModelEntry]:
    stmt = select(BaseModelEntry).where(_visible_to(org_id)).order_by(BaseModelEntry.created_at)
    with db.read() as session:
        return list(session.scalars(stmt))


def get_trained_model(db: Database, org_id: str, model_id: str) -> TrainedModel:
    with db.read() as session:
        row = session.get(TrainedModel, model_id)
    if row is None or row.org_id != org_id:
        raise NotFound("model", model_id)
    return row


def list_trained_models(db: Database, org_id: str) -> list[TrainedModel]:
    stmt = select(TrainedModel).where(TrainedModel.org_id == org_id).order_by(TrainedModel.created_at.desc())
    with db.read() as session:
        return list(session.scalars(stmt))


def delete_trained_model(db: Database, org_id: str, model_id: str) -> TrainedModel:
    """Delete the row; returns it so the caller can remove the weights."""
    with db.write() as session:
        row = session.execute(
            delete(TrainedModel).where(TrainedModel.id == model_id, TrainedModel.org_id == org_id)
            .returning(TrainedModel).execution_options(synchronize_session=False)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound("model", model_id)
    return row
