from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from tuneyard.store import Database, jobs, labels, lifecycle, migrate
from tuneyard.store.migrate import alembic_config, is_current
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


def alembic(db: Database, action: str, revision: str) -> None:
    """Run `alembic upgrade|downgrade revision` on the test's database, as migrate() runs head."""
    config = alembic_config()
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


OLD_JOB = """INSERT INTO jobs (id, org_id, type, status, spec, config, attempt, retries, max_retries, stop_requested,
    cancel_requested, progress, event_seq, log_seq, created_at)
    VALUES ('job_old', :org, 'finetune', 'queued', '{}', '{}', 0, 0, 3, false, false, '{}', 0, 0, :now)"""

OLD_EVENT = """INSERT INTO job_events (job_id, seq, type, message, data, created_at)
    VALUES ('job_old', 1, 'created', 'job queued', '{}', :now)"""


def test_labels_and_aliases_arrive_on_a_database_with_jobs_and_leave_it_as_it_was(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    alembic(db, "upgrade", "0001")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES ('org_old', 'o', :now)"),
                     {"now": datetime(2026, 1, 1)})
        conn.execute(text(OLD_JOB), {"org": "org_old", "now": datetime(2026, 1, 1)})
        conn.execute(text(OLD_EVENT), {"now": datetime(2026, 1, 1)})
    migrate(db.engine)
    assert jobs.get_job(db, "org_old", "job_old").labels == {}
    labels.add_alias(db, "org_old", "fusion", "uuid-old", "job_old")
    alembic(db, "downgrade", "0001")
    assert "job_aliases" not in inspect(db.engine).get_table_names()
    assert "labels" not in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
    with db.engine.connect() as conn:  # the job and what hangs off it are still there
        assert conn.execute(text("SELECT status FROM jobs WHERE id = 'job_old'")).scalar() == "queued"
        assert conn.execute(text("SELECT count(*) FROM job_events WHERE job_id = 'job_old'")).scalar() == 1
    migrate(db.engine)
    assert is_current(db.engine) and labels.aliases_of(db, "org_old", "job_old") == {}


def test_telemetry_offsets_arrive_unknown_on_old_jobs_and_leave_them_as_they_were(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    alembic(db, "upgrade", "0002")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES ('org_old', 'o', :now)"),
                     {"now": datetime(2026, 1, 1)})
        conn.execute(text(OLD_JOB), {"org": "org_old", "now": datetime(2026, 1, 1)})
    migrate(db.engine)
    # Unknown, not 0: its next attempt reads on from the end of the file, as attempts did before.
    claimed = lifecycle.claim(db, "w1", 30, device="cpu")
    assert claimed is not None and (claimed.telemetry_offset, claimed.telemetry_attempt) == (None, None)
    alembic(db, "downgrade", "0002")
    gone = {"jobs": {"telemetry_offset", "telemetry_attempt"}, "metric_points": {"attempt"},
            "log_lines": {"attempt"}, "checkpoints": {"attempt"}}
    for table, columns in gone.items():
        assert not {c["name"] for c in inspect(db.engine).get_columns(table)} & columns, table
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM job_events WHERE job_id = 'job_old'")).scalar() == 1  # claimed
    migrate(db.engine)
    assert is_current(db.engine)


def test_required_devices_arrive_empty_on_old_jobs_and_leave_them_as_they_were(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    alembic(db, "upgrade", "0011")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES ('org_old', 'o', :now)"),
                     {"now": datetime(2026, 1, 1)})
        conn.execute(text(OLD_JOB), {"org": "org_old", "now": datetime(2026, 1, 1)})
    migrate(db.engine)
    claimed = lifecycle.claim(db, "gpu", 30, device="cuda")  # a job from before requires no device
    assert claimed is not None and claimed.job_id == "job_old"
    alembic(db, "downgrade", "0011")
    assert "required_device" not in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM job_events WHERE job_id = 'job_old'")).scalar() == 1  # claimed
    migrate(db.engine)
    assert is_current(db.engine)
