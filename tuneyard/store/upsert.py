"""INSERT that skips rows whose key already exists, on both dialects (ON CONFLICT DO NOTHING)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_duplicates(
    session: Session, model: type[Any], rows: Sequence[dict[str, Any]], key: Sequence[str]
) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(model).values(list(rows)).on_conflict_do_nothing(index_elements=list(key))
    session.execute(stmt)
