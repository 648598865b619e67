"""Training tier: tiny models made on the spot, real torch, real subprocesses and signals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.runs import REPO


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Built-in models are made once and cached across test runs (the repo's .cache/)."""
    path = REPO / ".cache" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
