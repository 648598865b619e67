"""Settings make every path absolute once, where they are built: runners work in another folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneyard.settings import Settings
from tuneyard.worker.command import runner_argv


def test_relative_paths_are_made_absolute_against_the_starting_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("tuneyard-data"), model_cache_dir=Path("cache/../models"),
                        model_roots=(Path("roots/a"),), runner_python=".venv/bin/python")
    assert settings.data_dir == tmp_path / "tuneyard-data"
    assert settings.model_cache_dir == tmp_path / "models"
    assert settings.model_roots == (tmp_path / "roots" / "a",)
    assert settings.runner_python == str(tmp_path / ".venv" / "bin" / "python")


def test_a_bare_interpreter_name_is_left_to_the_path_lookup() -> None:
    assert Settings(runner_python="python3").runner_python == "python3"


def test_environment_and_flags_give_absolute_paths_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from_env = Settings.from_env({"TUNEYARD_DATA_DIR": "data", "TUNEYARD_MODEL_CACHE_DIR": "~/models"})
    assert from_env.data_dir == tmp_path / "data"
    assert from_env.model_cache_dir == Path.home() / "models"
    assert from_env.with_overrides(data_dir=Path("other")).data_dir == tmp_path / "other"


def test_the_default_data_folder_reaches_the_runner_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()  # ./tuneyard-data, as `scripts/serve` runs it
    run_dir = settings.data_dir / "runs" / "job_1"
    argv = runner_argv(settings, run_dir)
    paths = [argv[3], argv[argv.index("--run-dir") + 1], argv[argv.index("--model-cache-dir") + 1]]
    assert all(Path(p).is_absolute() for p in paths)
    assert paths[0] == str(tmp_path / "tuneyard-data" / "runs" / "job_1" / "spec.json")
