"""Bring a database to the newest schema, programmatically, at start-up.

Safe when several processes start at once: the whole upgrade runs in one write transaction that
first takes a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-level advisory lock), so the
second process waits, then finds the schema at head and does nothing. Both databases have
transactional DDL, so a failed upgrade leaves no half-made schema.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed 64-bit number; it only has to be the same in every tuneyard process.
ADVISORY_LOCK_KEY = 7_414_001_233


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(engine: Engine, attempts: int = 5) -> None:
    """Upgrade the database behind `engine` to the head revision."""
    for attempt in range(1, attempts + 1):
        try:
            _upgrade(engine)
            return
        except OperationalError as exc:
            # SQLite answers "locked" at once, without its busy wait, where waiting could deadlock
            # (seen once under load: several processes opening a new file, which switches to WAL).
            # The upgrade is one transaction, so nothing is half-done: try again shortly.
            if engine.dialect.name != "sqlite" or "locked" not in str(exc.orig) or attempt == attempts:
                raise
            time.sleep(0.1 * attempt)


def _upgrade(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def is_current(engine: Engine) -> bool:
    """True when the database is at the head revision (what `migrate` would leave)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
