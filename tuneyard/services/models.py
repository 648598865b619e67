"""Trained models: what completed jobs made, with their lineage (base model, datasets, job)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tuneyard.settings import Settings
from tuneyard.store import catalog as store
from tuneyard.store.engine import Database
from tuneyard.store.tables import TrainedModel


def list_models(db: Database, org_id: str) -> list[TrainedModel]:
    return store.list_trained_models(db, org_id)


def get_model(db: Database, org_id: str, model_id: str) -> TrainedModel:
    return store.get_trained_model(db, org_id, model_id)


def delete_model(db: Database, settings: Settings, org_id: str, model_id: str) -> None:
    """Forget the model and remove its weights, if they are inside the data folder."""
    row = store.delete_trained_model(db, org_id, model_id)
    weights = Path(row.path)
    # Never delete outside DATA_DIR, whatever path a row holds.
    if weights.is_dir() and weights.resolve().is_relative_to(settings.data_dir.resolve()):
        shutil.rmtree(weights)
