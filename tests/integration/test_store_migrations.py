from __future__ import annotations

import threading
from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tuneyard.store import Database, migrate
from tuneyard.store.migrate import is_current
from tuneyard.store.tables import Base


def test_migrations_build_exactly_the_tables_the_code_declares(db: Database) -> None:
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []


def test_migrate_twice_is_a_no_op(db: Database) -> None:
    migrate(db.engine)
    assert is_current(db.engine)


def test_two_processes_starting_at_once_both_end_at_head(open_db: Callable[[], Database]) -> None:
    engines = [open_db().engine for _ in range(4)]
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            migrate(engines[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(is_current(e) for e in engines)
    assert "jobs" in inspect(engines[0]).get_table_names()


def test_sqlite_runs_in_wal_with_foreign_keys(db: Database) -> None:
    if db.dialect != "sqlite":
        return
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
