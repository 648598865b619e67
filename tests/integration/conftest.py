"""Database fixtures: every test gets a fresh SQLite file, and a fresh PostgreSQL schema when the
server at TUNEYARD_TEST_PG_URL (default: the local one) is reachable; otherwise the PostgreSQL
variant is skipped with the reason."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tuneyard.settings import Settings
from tuneyard.store import Database, make_engine, migrate

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_url() -> str:
    return os.environ.get("TUNEYARD_TEST_PG_URL", DEFAULT_PG_URL)


@cache
def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    try:
        engine = create_engine(pg_url(), poolclass=NullPool, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {make_url(pg_url()).render_as_string(hide_password=True)} unreachable: {exc}"
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of its own for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tuneyard.db'}"
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(pg_url(), poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(pg_url()).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url)


@pytest.fixture
def open_db(settings: Settings) -> Iterator[Callable[[], Database]]:
    """Opens another engine on this test's database (as another process would); all disposed after."""
    opened: list[Database] = []

    def _open() -> Database:
        db = Database(make_engine(settings, pool_size=12, max_overflow=20))
        opened.append(db)
        return db

    yield _open
    for db in opened:
        db.dispose()


@pytest.fixture
def db(open_db: Callable[[], Database]) -> Database:
    """The test's database, migrated to head."""
    database = open_db()
    migrate(database.engine)
    return database


@pytest.fixture
def org_id(db: Database) -> str:
    from tuneyard.store import tenancy

    return tenancy.create_org(db, "acme").id


@pytest.fixture
def new_job(db: Database, org_id: str) -> Callable[..., str]:
    """Queues a small job in the test organization and returns its id."""
    from tuneyard.store import jobs

    def _new(**overrides: object) -> str:
        fields: dict[str, object] = {"org_id": org_id, "type": "finetune", "spec": {"base_model": "tiny-llama"},
                                     "config": {"steps": 10}}
        fields.update(overrides)
        return jobs.create_job(db, jobs.NewJob(**fields)).job.id  # type: ignore[arg-type]

    return _new
