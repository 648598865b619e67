"""End-to-end tier: a real `tuneyard serve` subprocess, real HTTP, real runners and signals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import database_url  # noqa: F401 - the SQLite / PostgreSQL fixture
from tests.support.runs import REPO
from tests.support.service import Service


@pytest.fixture(scope="session")
def model_cache() -> Path:
    path = REPO / ".cache" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def service(tmp_path: Path, database_url: str, model_cache: Path) -> Iterator[Service]:  # noqa: F811
    svc = Service(tmp_path / "data", database_url, model_cache)
    try:
        yield svc
    finally:
        svc.stop_all()
