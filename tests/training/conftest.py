"""Training tier: tiny models made on the spot, real torch, real subprocesses and signals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.runs import REPO, reap_started_runners
from tuneyard.settings import Settings
from tuneyard.store import Database, make_engine, migrate


@pytest.fixture(autouse=True)
def _no_runner_outlives_its_test() -> Iterator[None]:
    yield
    reap_started_runners()


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Built-in models are made once and cached across test runs (the repo's .cache/)."""
    path = REPO / ".cache" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(tmp_path: Path, model_cache: Path) -> Settings:
    """A worker's settings: a fresh data folder (SQLite in it), the shared model cache, no nice."""
    return Settings(data_dir=tmp_path / "data", model_cache_dir=model_cache, runner_nice=0)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    settings.data_dir.mkdir(parents=True)
    database = Database(make_engine(settings))
    migrate(database.engine)
    yield database
    database.dispose()
