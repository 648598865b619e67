"""Activated models: one row per served trained model (table model_activations)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tuneyard.store.activation_tables import ModelActivation
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import utcnow


def activate(db: Database, org_id: str, model_id: str, *, backend: str, export_id: str | None,
             provider_model: str | None) -> ModelActivation:
    """Activate the model, or change how it is served; 409 when another model has the name."""
    try:
        with db.write() as session:
            row = session.get(ModelActivation, model_id)
            if row is None:
                row = ModelActivation(model_id=model_id, org_id=org_id)
                session.add(row)
            row.backend, row.export_id, row.provider_model = backend, export_id, provider_model
            row.activated_at = utcnow()
    except IntegrityError as exc:
        raise Conflict(f"another activated model is already named {provider_model!r}",
                       field="provider_model") from exc
    return row


def deactivate(db: Database, org_id: str, model_id: str) -> bool:
    with db.write() as session:
        done = session.execute(delete(ModelActivation).where(ModelActivation.model_id == model_id,
                                                             ModelActivation.org_id == org_id))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def get_activation(db: Database, org_id: str, model_id: str) -> ModelActivation | None:
    with db.read() as session:
        row = session.get(ModelActivation, model_id)
    return row if row is not None and row.org_id == org_id else None


def by_provider_model(db: Database, org_id: str, name: str) -> ModelActivation:
    stmt = select(ModelActivation).where(ModelActivation.org_id == org_id, ModelActivation.provider_model == name)
    with db.read() as session:
        row = session.scalars(stmt).first()
    if row is None:
        raise NotFound("model", name)
    return row


def list_activations(db: Database, org_id: str) -> list[ModelActivation]:
    stmt = select(ModelActivation).where(ModelActivation.org_id == org_id)
    with db.read() as session:
        return list(session.scalars(stmt))
