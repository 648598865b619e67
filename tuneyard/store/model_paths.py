"""Where a trained model's weights live, when they move (out of a run folder being deleted)."""

from __future__ import annotations

from sqlalchemy import update

from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import TrainedModel


def move_trained_model(db: Database, model_id: str, path: str) -> None:
    """Record the new folder of a model whose files were moved to `path`."""
    with db.write() as session:
        done = session.execute(
            update(TrainedModel).where(TrainedModel.id == model_id).values(path=path)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound("model", model_id)
