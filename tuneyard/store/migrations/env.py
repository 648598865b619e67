"""Alembic environment: always run through tuneyard.store.migrate, which passes the connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from tuneyard.store.tables import Base


def run() -> None:
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through tuneyard.store.migrate(engine)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        transactional_ddl=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
